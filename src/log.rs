//! Logging: gobetween's text line format or JSON, to stdout, stderr or a file.
