"""Personal data under control: one inventory of it, erasure and export of a person, retention per
program, and the audit trail. See README's "For the data protection officer"."""
