"""Voice search: audio decoding, speech recognisers, spoken forms and catalogue hotwords."""
