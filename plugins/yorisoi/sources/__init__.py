"""Source systems: loaders and extractors for the brand's OMS, e-commerce, SFTP drops."""
