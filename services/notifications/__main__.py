"""`python -m services.notifications`: begins as every service process does (shared.startup),
then runs the service."""

from shared.startup import begin

begin()

from services.notifications.app import main  # noqa: E402

if __name__ == "__main__":
    main()
