from mptf_cli.console.app import main

main()
