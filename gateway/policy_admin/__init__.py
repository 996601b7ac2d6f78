"""The ISA versions the gateway runs: stored with their hash, reloaded, explained and compared for IG."""
