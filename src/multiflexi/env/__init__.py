"""Pure environment assembly: layers with provenance, macros, and the command line."""
