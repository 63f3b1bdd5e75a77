"""What an exported network takes and returns, and what reffakd reads as a model: torch-free, for the parser."""

INPUT_KINDS = ("uint8", "float")  # uint8 pixels 0..255, or float pixels in [0, 1]
OUTPUT_KINDS = ("logits", "probabilities")
# What evaluate, predict and bench read (``model.open_model``): a trained checkpoint or an exported model.
MODEL_FILES = "a .safetensors checkpoint (reffakd train), or a model.onnx or model.pt2 (reffakd export)"
