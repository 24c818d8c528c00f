"""The monitor: drift and online quality of the champion, on sliding windows of event time."""
