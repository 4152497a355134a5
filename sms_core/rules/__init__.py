"""Pure rules: phone numbers, segments, keywords, templates, quiet hours, CSV, filters. No I/O."""
