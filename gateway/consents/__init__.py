"""The consent registry: consent given, refused or withdrawn, as a history; FHIR Consent in and out."""
