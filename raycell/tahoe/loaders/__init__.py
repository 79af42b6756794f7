"""The loading strategies: the registry, the scDataset and Ray Data families, sampling weights."""
