"""`python -m services.intake`: skips what the process never uses, then runs the service."""

from shared.startup import skip_unused_imports

skip_unused_imports()

from services.intake.app import main  # noqa: E402

if __name__ == "__main__":
    main()
