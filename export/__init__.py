"""Workstation side: Keras encoder -> TFLite, calibration and the device bundle (needs TensorFlow)."""
