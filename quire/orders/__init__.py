"""The marketplace: orders, bids, claims and submissions, and the state machine that rules them."""
