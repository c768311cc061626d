-- A contact's own time zone, an IANA name such as Asia/Tokyo (the contacts file's optional
-- `timezone` column, checked against the tz database when loaded). NULL: none given, the
-- reader's zone then comes from the account's country.
ALTER TABLE contacts ADD COLUMN timezone VARCHAR(64);
