"""Sharing: packaging what unetkit reads or runs for other tools (nnU-Net conversion...)."""
