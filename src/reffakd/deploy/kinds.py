"""What an exported network takes and returns, torch-free: the command line's ``export --input/--output`` choices."""

INPUT_KINDS = ("uint8", "float")  # uint8 pixels 0..255, or float pixels in [0, 1]
OUTPUT_KINDS = ("logits", "probabilities")
