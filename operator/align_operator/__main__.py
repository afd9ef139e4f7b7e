from align_operator.runner import main

main()
