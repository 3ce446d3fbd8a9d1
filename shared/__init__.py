"""Code shared by the producer (Python API and gateway) and the channel workers."""
