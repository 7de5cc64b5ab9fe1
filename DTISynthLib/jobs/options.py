"""What every job's parser has. The option value types live with the requests (service.requests)."""


def add_jsonl_option(parser):
    parser.add_argument("--jsonl", action="store_true", help="JSON-lines progress events on stdout")
