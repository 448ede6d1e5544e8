"""``python -m evalwatch.testing``: serve the fake OpenAI-compatible server until interrupted."""

from evalwatch.testing.openai_server import main

if __name__ == "__main__":
    main()
