"""Pure wire-format code: bytes and arrays in, records out. No sockets, no files."""
