/* Runs tinynet on a fixed batch of 2 and prints each probability with %.9g, one per line
 * (tests/cli/cmake_package_test.sh compares them with the executable's). */
#ifndef HEADER
#define HEADER "tinynet.h"
#endif
#include HEADER

#include <stdio.h>

int main(void) {
    tinynet *net = NULL;
    if (tinynet_create(&net, NULL) != 0) {
        fprintf(stderr, "tinynet: %s\n", tinynet_last_error(net));
        tinynet_destroy(net);
        return 1;
    }
    float x[2 * TINYNET_X_SIZE], probs[2 * TINYNET_PROBS_SIZE];
    for (int i = 0; i < 2 * TINYNET_X_SIZE; i++) x[i] = (float)((i * 7) % 13 - 6) / 8.0f; /* exact in float */
    if (tinynet_infer(net, 2, x, probs) != 0) {
        fprintf(stderr, "tinynet: %s\n", tinynet_last_error(net));
        tinynet_destroy(net);
        return 1;
    }
    for (int i = 0; i < 2 * TINYNET_PROBS_SIZE; i++) printf("%.9g\n", probs[i]);
    tinynet_destroy(net);
    return 0;
}
