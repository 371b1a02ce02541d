"""mscn: a neural codec that sends sparse, quantised, arithmetic-coded updates to a meta-learned INR."""

from ._runtime import tune_allocator

tune_allocator()

__version__ = "0.2.0"


def encode_image(image, **kwargs) -> bytes:
    """Encode an image (path or H x W x C uint8 array) into .mscn bytes. See codec.encode_image."""
    from .codec import encode_image as _enc

    return _enc(image, **kwargs)


def decode(data: bytes):
    """Decode .mscn bytes into an H x W x C uint8 array. See codec.decode."""
    from .codec import decode as _dec

    return _dec(data)


__all__ = ["encode_image", "decode", "__version__"]
