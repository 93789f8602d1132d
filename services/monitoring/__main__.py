"""`python -m services.monitoring`: begins as every service process does (shared.startup),
then runs the service."""

from shared.startup import begin

begin()

from services.monitoring.app import main  # noqa: E402

if __name__ == "__main__":
    main()
