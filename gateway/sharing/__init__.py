"""Routes beyond consent: overrides, break-glass, and requests to see a withheld item."""
