/*
 * prompt_cache.c — remembers the conditioning embeddings of recent prompts.
 *
 * Text encoding is the most expensive stage to repeat for nothing: a batch of
 * K images, or a server asked twice for the same prompt, encodes it once.
 * Keyed by the exact prompt bytes; 8 slots, least recently used evicted.
 */
#include <stdlib.h>
#include <string.h>

#include "engine_impl.h"

const prompt_cache_entry *mold_prompt_cache_get(mold_engine *e, const char *prompt) {
    for (int i = 0; i < PROMPT_CACHE_SLOTS; i++) {
        prompt_cache_entry *c = &e->cache[i];
        if (c->prompt && !strcmp(c->prompt, prompt)) {
            c->last_used = ++e->cache_clock;
            return c;
        }
    }
    return NULL;
}

static void entry_free(prompt_cache_entry *c) {
    free(c->prompt);
    free(c->embeds);
    free(c->ids);
    memset(c, 0, sizeof *c);
}

mold_status mold_prompt_cache_put(mold_engine *e, const char *prompt, const float *embeds,
                                  int len, int hidden, const int32_t *ids, size_t n_ids) {
    prompt_cache_entry *slot = &e->cache[0];
    for (int i = 0; i < PROMPT_CACHE_SLOTS; i++) {
        if (!e->cache[i].prompt) {
            slot = &e->cache[i];
            break;
        }
        if (e->cache[i].last_used < slot->last_used) slot = &e->cache[i];
    }
    entry_free(slot);
    size_t nb = (size_t)len * (size_t)hidden * sizeof(float);
    slot->prompt = strdup(prompt);
    slot->embeds = malloc(nb ? nb : 1);
    slot->ids = malloc(n_ids ? n_ids * sizeof(int32_t) : 1);
    if (!slot->prompt || !slot->embeds || !slot->ids) {
        entry_free(slot);
        return MOLD_ERR(MOLD_E_NOMEM, "prompt cache: out of memory");
    }
    memcpy(slot->embeds, embeds, nb);
    if (n_ids) memcpy(slot->ids, ids, n_ids * sizeof(int32_t));
    slot->n_ids = n_ids;
    slot->len = len;
    slot->last_used = ++e->cache_clock;
    return MOLD_OK;
}

void mold_prompt_cache_clear(mold_engine *e) {
    for (int i = 0; i < PROMPT_CACHE_SLOTS; i++) entry_free(&e->cache[i]);
}
