"""mscn: a neural codec that sends sparse, quantised, arithmetic-coded updates to a meta-learned INR."""

from mscncodec._runtime import tune_allocator  # an explicit call (the CLI makes it): importing changes nothing

__version__ = "0.2.0"


def encode_image(image, **kwargs) -> bytes:
    """Encode an image (path or H x W x C uint8 array) into .mscn bytes. See codec.encode_image."""
    from mscncodec.modalities.image_codec import encode_image as _enc

    return _enc(image, **kwargs)


def encode(src, **kwargs):
    """Encode an image or a mesh (path, image array or Mesh) into .mscn bytes. See api.encode."""
    from mscncodec.api import encode as _enc

    return _enc(src, **kwargs)


def decode(data: bytes, **kwargs):
    """Decode .mscn bytes into what they hold: an H x W x C uint8 array or a Mesh. See api.decode."""
    from mscncodec.api import decode as _dec

    return _dec(data, **kwargs)


__all__ = ["encode", "encode_image", "decode", "tune_allocator", "__version__"]
