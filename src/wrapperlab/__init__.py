"""wrapperlab: does fine-tuning delete a capability, or wrap it? Tools to find out."""

__version__ = "0.1.0"
