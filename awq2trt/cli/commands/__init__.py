"""One module per command: each adds its parser (`add_parser`) beside the handler it dispatches to."""
