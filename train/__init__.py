"""Workstation side: data, Siamese MobileNetV2 training and evaluation (needs TensorFlow)."""
