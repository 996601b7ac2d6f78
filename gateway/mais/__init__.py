"""Other agencies' queries about a person: POST /fhir/R4/Patient/$person-info-query (MAIS standard)."""
