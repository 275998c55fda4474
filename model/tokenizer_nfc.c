// UTF-8 validation and Unicode NFC (canonical decomposition, canonical ordering, canonical
// composition; UAX #15), for tokenizer.json files whose normalizer is NFC (Qwen2/Qwen3).
// Text without any code point that can change under NFC (all ASCII, most CJK) is left alone
// after one scan; tables are in tokenizer_nfc_table.h (tools/tokenizer_nfc_table.py).
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "model/tokenizer_internal.h"
#include "model/tokenizer_nfc_table.h"

// ----------------------------------------------------------------------------
// UTF-8

size_t utf8_valid_prefix(const char* str, size_t len) {
    const unsigned char* s = (const unsigned char*)str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t min;
        if (c >= 0xc2 && c <= 0xdf) n = 2, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef) n = 3, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4) n = 4, min = 0x10000;
        else break;
        if (i + n > len) break;
        uint32_t cp = c & (0x7f >> n);
        size_t k = 1;
        for (; k < n && (s[i + k] & 0xc0) == 0x80; k++) cp = cp << 6 | (s[i + k] & 0x3f);
        if (k < n || cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) break;
        i += n;
    }
    return i;
}

// decodes one code point of valid UTF-8, advancing *i
static uint32_t utf8_next(const unsigned char* s, size_t* i) {
    unsigned char c = s[*i];
    size_t n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    uint32_t cp = n == 1 ? c : (uint32_t)(c & (0x7f >> n));
    for (size_t k = 1; k < n; k++) cp = cp << 6 | (s[*i + k] & 0x3f);
    *i += n;
    return cp;
}

static size_t utf8_put(char* out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

// ----------------------------------------------------------------------------
// table lookups (binary search)

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int is_unsafe(uint32_t cp) {
    int lo = 0, hi = N_OF(nfc_unsafe) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < nfc_unsafe[mid].lo) hi = mid - 1;
        else if (cp > nfc_unsafe[mid].hi) lo = mid + 1;
        else return 1;
    }
    return 0;
}

static int ccc_of(uint32_t cp) {
    int lo = 0, hi = N_OF(nfc_ccc) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < nfc_ccc[mid].lo) hi = mid - 1;
        else if (cp > nfc_ccc[mid].hi) lo = mid + 1;
        else return nfc_ccc[mid].c;
    }
    return 0;
}

static int decomp_of(uint32_t cp) { // index into nfc_decomp, or -1
    int lo = 0, hi = N_OF(nfc_decomp) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < nfc_decomp[mid].cp) hi = mid - 1;
        else if (cp > nfc_decomp[mid].cp) lo = mid + 1;
        else return mid;
    }
    return -1;
}

// Hangul syllables are composed by formula (Unicode ch. 3.12)
enum { H_SBASE = 0xAC00, H_LBASE = 0x1100, H_VBASE = 0x1161, H_TBASE = 0x11A7, H_LCOUNT = 19, H_VCOUNT = 21,
       H_TCOUNT = 28, H_NCOUNT = H_VCOUNT * H_TCOUNT, H_SCOUNT = H_LCOUNT * H_NCOUNT };

static uint32_t compose(uint32_t a, uint32_t b) { // 0 if the pair has no primary composite
    if (a >= H_LBASE && a < H_LBASE + H_LCOUNT && b >= H_VBASE && b < H_VBASE + H_VCOUNT)
        return H_SBASE + ((a - H_LBASE) * H_VCOUNT + (b - H_VBASE)) * H_TCOUNT;
    if (a >= H_SBASE && a < H_SBASE + H_SCOUNT && (a - H_SBASE) % H_TCOUNT == 0 && b > H_TBASE &&
        b < H_TBASE + H_TCOUNT)
        return a + (b - H_TBASE);
    int lo = 0, hi = N_OF(nfc_comp) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (a < nfc_comp[mid].first || (a == nfc_comp[mid].first && b < nfc_comp[mid].second)) hi = mid - 1;
        else if (a > nfc_comp[mid].first || b > nfc_comp[mid].second) lo = mid + 1;
        else return nfc_comp[mid].composite;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// NFC

char* nfc_normalize(const char* str, size_t len, size_t* out_len) {
    const unsigned char* s = (const unsigned char*)str;
    size_t i = 0;
    int unsafe = 0;
    while (i < len && !unsafe) {
        if (s[i] < 0xcc) { // below U+0300 nothing changes: skip ASCII and Latin quickly
            i += s[i] < 0x80 ? 1 : 2;
            continue;
        }
        unsafe = is_unsafe(utf8_next(s, &i));
    }
    if (!unsafe) return NULL;

    // decompose into code points (at most 4 per input byte's worth: a code point takes >= 1 byte
    // and decomposes into <= 4, Hangul into <= 3)
    uint32_t* cp = mallocCheck(4 * len * sizeof(uint32_t));
    size_t n = 0;
    for (i = 0; i < len;) {
        uint32_t c = utf8_next(s, &i);
        if (c >= H_SBASE && c < H_SBASE + H_SCOUNT) {
            uint32_t si = c - H_SBASE;
            cp[n++] = H_LBASE + si / H_NCOUNT;
            cp[n++] = H_VBASE + (si % H_NCOUNT) / H_TCOUNT;
            if (si % H_TCOUNT) cp[n++] = H_TBASE + si % H_TCOUNT;
            continue;
        }
        int d = decomp_of(c);
        if (d < 0) cp[n++] = c;
        else
            for (int k = 0; k < nfc_decomp[d].n; k++) cp[n++] = nfc_decomp_cps[nfc_decomp[d].off + k];
    }
    // canonical ordering: stable sort of each run of non-starters by combining class
    uint8_t* cc = mallocCheck(n + 1);
    for (size_t k = 0; k < n; k++) cc[k] = (uint8_t)ccc_of(cp[k]);
    for (size_t k = 1; k < n; k++) {
        for (size_t j = k; j > 0 && cc[j] != 0 && cc[j - 1] > cc[j]; j--) {
            uint32_t tc = cp[j];
            uint8_t tk = cc[j];
            cp[j] = cp[j - 1], cc[j] = cc[j - 1];
            cp[j - 1] = tc, cc[j - 1] = tk;
        }
    }
    // canonical composition: a character joins the last starter unless blocked by a character
    // of the same or higher class between them
    size_t m = 0, starter = 0;
    int have_starter = 0, last_cc = 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t c = cp[k];
        int ck = cc[k];
        if (have_starter && (last_cc < ck || (last_cc == 0 && m == starter + 1))) {
            uint32_t comp = compose(cp[starter], c);
            if (comp) {
                cp[starter] = comp;
                continue;
            }
        }
        if (ck == 0) {
            starter = m;
            have_starter = 1;
        }
        last_cc = ck;
        cp[m] = c;
        cc[m] = (uint8_t)ck;
        m++;
    }
    char* out = mallocCheck(4 * m + 1);
    size_t o = 0;
    for (size_t k = 0; k < m; k++) o += utf8_put(out + o, cp[k]);
    out[o] = '\0';
    free(cp);
    free(cc);
    *out_len = o;
    return out;
}
