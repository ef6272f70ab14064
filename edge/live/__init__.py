"""The live camera room: capture sources (OpenCV, picamera2, a paced video), the latest-frame loop,
gallery hot reload and the web view. Importing the package loads nothing."""
