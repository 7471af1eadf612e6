"""Task harnesses: data + model + the shared training loop + evaluation."""
