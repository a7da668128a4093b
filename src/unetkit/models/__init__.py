"""The U-Net family, the registry that builds it by name, and the on-disk artifact."""
