/* placeholder: replaced by the CLI */
#include <stdio.h>
int main(void) { puts("smudge"); return 0; }
