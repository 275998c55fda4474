// Host stand-in for CUB's DeviceRadixSort::SortPairs in the emulated build: a stable sort of
// (key, value) pairs by the key bits [begin_bit, end_bit), as CUB's radix sort orders them.
#pragma once
#include <stddef.h>

#include <algorithm>
#include <vector>

#include "cuda_runtime.h"

namespace cub {
struct DeviceRadixSort {
    template <class K, class V>
    static cudaError_t SortPairs(void* temp, size_t& temp_bytes, const K* keys_in, K* keys_out, const V* values_in,
                                 V* values_out, int n, int begin_bit = 0, int end_bit = (int)sizeof(K) * 8,
                                 cudaStream_t = 0) {
        if (!temp) {
            temp_bytes = 1; // CUB asks for scratch; the host sort needs none
            return cudaSuccess;
        }
        const unsigned long long bits = end_bit - begin_bit >= 64 ? ~0ull : (1ull << (end_bit - begin_bit)) - 1;
        auto key = [&](int i) { return ((unsigned long long)keys_in[i] >> begin_bit) & bits; };
        std::vector<int> order(n);
        for (int i = 0; i < n; i++) order[i] = i;
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key(a) < key(b); });
        for (int i = 0; i < n; i++) keys_out[i] = keys_in[order[i]], values_out[i] = values_in[order[i]];
        return cudaSuccess;
    }
};
} // namespace cub
