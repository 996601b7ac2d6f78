"""The merged view of one child for one purpose."""
