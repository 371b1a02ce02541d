"""INR families: each owns its network, its encoder (fitting + rate control) and its training.
No family imports another; what they share lives in mscncodec.coding."""
