"""The .mscn container: the header declared as data, sections and CRC, and safe file I/O."""
