"""Inboxes: Operation Encompass notices for schools and notifications for lead practitioners."""
