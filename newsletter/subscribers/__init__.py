"""Who receives the issue: a subscriber's standing and its history (`rules`), lists in and out
as CSV (`csv`), joining and leaving from the web (`membership`), and the limits that keep the
subscribe form from being abused (`throttle`)."""
