"""Media: loading product and query photos safely (size and pixel limits, path and URL checks)."""
