"""Tahoe-100M on disk: plates, label spaces, the CSR reader, and in-format generators."""
