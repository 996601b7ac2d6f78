"""`make bench`: measure the gateway end to end on a scratch PostgreSQL database, and check what it stored."""
