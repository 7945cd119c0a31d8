"""Linux realm: trace input turned into a time-ordered stream of events and gaps."""
