from services.funding.app import main

main()
