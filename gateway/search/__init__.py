"""Finding a child: by NHS number, or by two of name, birth date and postcode, through linking's matching."""
