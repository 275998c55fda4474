// retail: a tau-bench-like store. A seeded database of products (colour variants), users
// (name, zip, payment methods) and their orders; each task is one customer message asking to
// cancel, return or exchange. Tools look users, orders and products up, change orders under
// the store's preconditions (identity first; cancel only pending orders; return and exchange
// only delivered ones), and done() ends the conversation: reward 1 when every order then
// matches the goal state.
// Hidden rules (RT_RULES): customers mean their most recent matching order; an order takes one
// return or exchange request, so every item goes into one call; refunds and charges use the
// order's own payment method; a delivered order cannot be cancelled and is returned instead.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "rollout/env_impl.h"

// ----------------------------------------------------------------------------
// the database

typedef enum { R_LATEST = 0, R_ONE_REQUEST, R_PAYMENT, R_DELIVERED, R_COUNT } RuleId;

static const EnvRule RT_RULES[R_COUNT] = {
    {"latest_order", "When several of a customer's orders hold the product they mention, act on the most recent "
                     "one; check orders from the newest."},
    {"one_request", "When a customer returns or exchanges several items of one order, put them all in a single "
                    "call; an order accepts only one request."},
    {"original_payment", "When a return or exchange needs a payment method, use the one the order was paid "
                         "with, not the customer's first listed method."},
    {"delivered_cancel", "When a customer asks to cancel an order that is already delivered, return all its items "
                         "instead; only pending orders can be cancelled."},
};

static const EnvTool RT_TOOLS[] = {
    {"find_user", "Find a customer by name and zip; confirms their identity.", 2,
     {{"name", "string", "full name", 1}, {"zip", "string", "zip code", 1}}},
    {"get_order", "Show an order's status, payment and items.", 1, {{"order_id", "string", "e.g. #W1012", 1}}},
    {"get_product", "Show a product's variants with ids and prices.", 1, {{"name", "string", "e.g. lamp", 1}}},
    {"cancel_order", "Cancel a pending order.", 2,
     {{"order_id", "string", "", 1}, {"reason", "string", "'no longer needed' or 'ordered by mistake'", 1}}},
    {"return_items", "Return delivered items; refund to a payment method.", 3,
     {{"order_id", "string", "", 1}, {"item_ids", "string[]", "variant ids in the order", 1},
      {"payment", "string", "payment method for the refund", 1}}},
    {"exchange_items", "Exchange delivered items for other variants of the same product.", 4,
     {{"order_id", "string", "", 1}, {"item_ids", "string[]", "variant ids in the order", 1},
      {"new_item_ids", "string[]", "new variant ids, same order", 1},
      {"payment", "string", "payment method for the price difference", 1}}},
    {"done", "End the conversation when the request is handled.", 0, {{0}}},
};
enum { T_FIND_USER, T_GET_ORDER, T_GET_PRODUCT, T_CANCEL, T_RETURN, T_EXCHANGE, T_DONE };

static const char* PRODUCTS[] = {"lamp", "mug", "shirt", "kettle", "backpack", "chair",
                                 "scarf", "clock", "vase", "blanket", "jacket", "teapot"};
static const char* COLORS[] = {"red", "blue", "green", "black", "white", "grey"};
static const char* REASONS[] = {"no longer needed", "ordered by mistake"};
static const char* REASON_TEXT[] = {"I no longer need it", "I ordered it by mistake"};
#define N_PRODUCTS 12
#define N_COLORS 6
#define MAX_VARIANTS 4
#define MAX_ITEMS 3
#define MAX_PAY 3
#define MAX_USER_ORDERS 5

typedef enum { S_PENDING, S_PROCESSED, S_DELIVERED, S_CANCELLED, S_RETURN, S_EXCHANGE } Status;
static const char* STATUS[] = {"pending", "processed", "delivered", "cancelled", "return requested",
                               "exchange requested"};

typedef struct {
    int product, color, price, in_stock;
} Variant; // id: "v<index + 10>"

typedef struct {
    int nvar;
    int var[MAX_VARIANTS];
} Product;

#define CHANGE_NONE -1
#define CHANGE_RETURNED -2

typedef struct {
    int number; // shown as "#W<number>"
    int user;
    int status;
    int pay;    // index into the user's payment methods
    int nitems;
    int item[MAX_ITEMS];   // variants
    int change[MAX_ITEMS]; // CHANGE_NONE, CHANGE_RETURNED, or the new variant
    int method;            // payment used for a refund or charge, -1 none
    int reason;            // cancel reason, -1 none
} Order;

typedef struct {
    char name[48];
    char zip[12];
    int npay;
    char pay[MAX_PAY][24];
    int norders;
    int orders[MAX_USER_ORDERS]; // oldest first
} User;

typedef enum { REQ_CANCEL, REQ_RETURN, REQ_EXCHANGE } RequestType;

typedef struct {
    int type;
    int user;
    int order;       // the order meant
    int nprod;       // products mentioned (1-2)
    int prod[2];
    int new_var[2];  // exchange: the variants wanted
    int reason;
    Order goal;      // the meant order after the request is handled
    char statement[256];
    uint32_t bites;
} RtTask;

typedef struct {
    Env base;
    Variant* vars;
    int nvars;
    Product products[N_PRODUCTS];
    User* users;
    int nusers;
    Order* orders0; // the initial database
    int norders, ocap;
    RtTask* tasks[2];
    // the episode
    int active, done;
    const RtTask* task;
    Order* orders;  // (norders) working copy
    int confirmed;  // user whose identity is confirmed, -1 none
    uint8_t* viewed_order; // (norders)
    uint8_t viewed_product[N_PRODUCTS];
    int writes;     // write calls (cancel, return, exchange) on the meant order's user, any outcome
} RetailEnv;

// ----------------------------------------------------------------------------
// world generation

static void make_catalog(RetailEnv* r, uint64_t* rng) {
    r->vars = mallocCheck(N_PRODUCTS * MAX_VARIANTS * sizeof(Variant));
    for (int p = 0; p < N_PRODUCTS; p++) {
        int colors[N_COLORS] = {0, 1, 2, 3, 4, 5};
        env_shuffle(rng, colors, N_COLORS);
        Product* pr = &r->products[p];
        pr->nvar = 3 + env_rand_below(rng, 2);
        int base_price = 10 + 5 * env_rand_below(rng, 12);
        for (int v = 0; v < pr->nvar; v++) {
            Variant* va = &r->vars[r->nvars];
            va->product = p;
            va->color = colors[v];
            va->price = base_price + 2 * env_rand_below(rng, 4);
            va->in_stock = v < 3 || env_rand_below(rng, 2);
            pr->var[v] = r->nvars++;
        }
    }
}

static int variant_of(const RetailEnv* r, int product, int color) {
    for (int v = 0; v < r->products[product].nvar; v++)
        if (r->vars[r->products[product].var[v]].color == color) return r->products[product].var[v];
    return -1;
}

static int new_order(RetailEnv* r, int user, uint64_t* rng) {
    if (r->norders == r->ocap) {
        r->ocap = r->ocap ? 2 * r->ocap : 256;
        r->orders0 = reallocCheck(r->orders0, (size_t)r->ocap * sizeof(Order));
    }
    Order* o = &r->orders0[r->norders];
    memset(o, 0, sizeof(*o));
    static const int status_pick[] = {S_PENDING, S_PROCESSED, S_DELIVERED, S_DELIVERED, S_CANCELLED};
    o->number = (r->norders ? r->orders0[r->norders - 1].number : 1000) + 1 + env_rand_below(rng, 9);
    o->user = user;
    o->status = status_pick[env_rand_below(rng, 5)];
    o->pay = env_rand_below(rng, r->users[user].npay);
    for (int k = 0; k < MAX_ITEMS; k++) o->change[k] = CHANGE_NONE;
    o->method = -1;
    o->reason = -1;
    User* u = &r->users[user];
    u->orders[u->norders++] = r->norders;
    return r->norders++;
}

// fills order o with n items of distinct products, none in `avoid` (nav products), plus `must`
static void fill_items(RetailEnv* r, Order* o, int n, const int* must, int nmust, const int* avoid, int nav,
                       uint64_t* rng) {
    o->nitems = 0;
    for (int k = 0; k < nmust; k++) {
        const Product* p = &r->products[must[k]];
        o->item[o->nitems++] = p->var[env_rand_below(rng, p->nvar)];
    }
    while (o->nitems < n) {
        int p = env_rand_below(rng, N_PRODUCTS), bad = 0;
        for (int k = 0; k < nav; k++) bad |= avoid[k] == p;
        for (int k = 0; k < o->nitems; k++) bad |= r->vars[o->item[k]].product == p;
        if (bad) continue;
        o->item[o->nitems++] = r->products[p].var[env_rand_below(rng, r->products[p].nvar)];
    }
}

static void make_user(RetailEnv* r, int u, uint64_t* rng) {
    User* us = &r->users[u];
    char first[24], last[24];
    env_make_word(rng, first, sizeof(first));
    env_make_word(rng, last, sizeof(last));
    snprintf(us->name, sizeof(us->name), "%s %s", first, last);
    snprintf(us->zip, sizeof(us->zip), "%05d", 10000 + env_rand_below(rng, 89999));
    const char* kinds[] = {"visa", "mastercard", "paypal", "gift card"};
    int order[4] = {0, 1, 2, 3};
    env_shuffle(rng, order, 4);
    us->npay = 2 + env_rand_below(rng, 2);
    for (int k = 0; k < us->npay; k++) {
        if (order[k] < 2)
            snprintf(us->pay[k], sizeof(us->pay[k]), "%s %04d", kinds[order[k]], env_rand_below(rng, 10000));
        else snprintf(us->pay[k], sizeof(us->pay[k]), "%s", kinds[order[k]]);
    }
}

// the meant order after the request: what done() compares against
static void apply_goal(const RetailEnv* r, RtTask* t) {
    Order* g = &t->goal;
    *g = r->orders0[t->order];
    if (t->type == REQ_CANCEL && g->status == S_PENDING) {
        g->status = S_CANCELLED;
        g->reason = t->reason;
        return;
    }
    g->method = g->pay;
    if (t->type == REQ_CANCEL) { // delivered: every item returned
        g->status = S_RETURN;
        for (int k = 0; k < g->nitems; k++) g->change[k] = CHANGE_RETURNED;
        return;
    }
    g->status = t->type == REQ_RETURN ? S_RETURN : S_EXCHANGE;
    for (int k = 0; k < g->nitems; k++)
        for (int p = 0; p < t->nprod; p++)
            if (r->vars[g->item[k]].product == t->prod[p])
                g->change[k] = t->type == REQ_RETURN ? CHANGE_RETURNED : t->new_var[p];
}

static void make_task(RetailEnv* r, RtTask* t, int user, uint64_t rng) {
    // which rules bite: none (40%), one (45%), two (15%)
    double u = env_rand_unit(&rng);
    uint32_t bites = 0;
    if (u >= 0.40 && u < 0.85) bites = 1u << env_rand_below(&rng, R_COUNT);
    else if (u >= 0.85) {
        int a = env_rand_below(&rng, R_COUNT), b = (a + 1 + env_rand_below(&rng, R_COUNT - 1)) % R_COUNT;
        bites = (1u << a) | (1u << b);
    }
    t->bites = bites;
    t->user = user;
    if (bites & (1u << R_DELIVERED)) t->type = REQ_CANCEL;
    else if (bites & ((1u << R_ONE_REQUEST) | (1u << R_PAYMENT))) t->type = REQ_RETURN + env_rand_below(&rng, 2);
    else t->type = env_rand_below(&rng, 3);
    int status = t->type == REQ_CANCEL && !(bites & (1u << R_DELIVERED)) ? S_PENDING : S_DELIVERED;
    int multi = (bites >> R_ONE_REQUEST) & 1;
    t->nprod = t->type != REQ_CANCEL && multi ? 2 : 1;
    int picks[N_PRODUCTS];
    for (int p = 0; p < N_PRODUCTS; p++) picks[p] = p;
    env_shuffle(&rng, picks, N_PRODUCTS);
    for (int p = 0; p < t->nprod; p++) t->prod[p] = picks[p];
    t->reason = env_rand_below(&rng, 2);

    make_user(r, user, &rng);
    // orders, oldest first: [older others] [decoy] [older others] target [newer others, at least one]
    int n_before = env_rand_below(&rng, 2), n_after = 1 + env_rand_below(&rng, 2);
    int decoy = (bites >> R_LATEST) & 1;
    for (int k = 0; k < n_before; k++) {
        int idx = new_order(r, user, &rng); // may move r->orders0
        fill_items(r, &r->orders0[idx], 1 + env_rand_below(&rng, 2), NULL, 0, t->prod, t->nprod, &rng);
    }
    if (decoy) {
        int idx = new_order(r, user, &rng);
        Order* o = &r->orders0[idx];
        o->status = status;
        fill_items(r, o, t->nprod + env_rand_below(&rng, 2), t->prod, t->nprod, t->prod, t->nprod, &rng);
    }
    t->order = new_order(r, user, &rng);
    Order* o = &r->orders0[t->order];
    o->status = status;
    // a cancelled delivered order returns every item: one_request bites only when it has two
    int nitems = t->type == REQ_CANCEL ? (status == S_DELIVERED ? 1 + multi : 1 + env_rand_below(&rng, 2))
                                       : t->nprod + env_rand_below(&rng, 2);
    fill_items(r, o, nitems, t->prod, t->nprod, t->prod, t->nprod, &rng);
    for (int k = 0; k < n_after; k++) {
        int idx = new_order(r, user, &rng);
        fill_items(r, &r->orders0[idx], 1 + env_rand_below(&rng, 2), NULL, 0, t->prod, t->nprod, &rng);
    }
    // payment: the customer's first method is the order's own unless original_payment bites
    User* us = &r->users[user];
    int needs_payment = status == S_DELIVERED;
    int first_is_own = !(needs_payment && (bites & (1u << R_PAYMENT)));
    o = &r->orders0[t->order];
    o->pay = first_is_own ? 0 : 1 + env_rand_below(&rng, us->npay - 1);
    // exchange: wanted colours are other in-stock variants
    for (int p = 0; p < t->nprod && t->type == REQ_EXCHANGE; p++) {
        int have = -1;
        for (int k = 0; k < o->nitems; k++)
            if (r->vars[o->item[k]].product == t->prod[p]) have = o->item[k];
        const Product* pr = &r->products[t->prod[p]];
        int v;
        do v = pr->var[env_rand_below(&rng, pr->nvar)];
        while (v == have || !r->vars[v].in_stock);
        t->new_var[p] = v;
    }
    apply_goal(r, t);

    const char* P0 = PRODUCTS[t->prod[0]];
    const char* P1 = t->nprod > 1 ? PRODUCTS[t->prod[1]] : NULL;
    int n = snprintf(t->statement, sizeof(t->statement), "I'm %s, zip %s. ", us->name, us->zip);
    char* s = t->statement + n;
    size_t left = sizeof(t->statement) - (size_t)n;
    if (t->type == REQ_CANCEL) snprintf(s, left, "Please cancel my %s order; %s.", P0, REASON_TEXT[t->reason]);
    else if (t->type == REQ_RETURN && !P1) snprintf(s, left, "I want to return the %s from my order.", P0);
    else if (t->type == REQ_RETURN) snprintf(s, left, "I want to return the %s and the %s from my order.", P0, P1);
    else if (!P1) snprintf(s, left, "Please exchange my %s for the %s one.", P0, COLORS[r->vars[t->new_var[0]].color]);
    else
        snprintf(s, left, "Please exchange my %s for the %s one and my %s for the %s one.", P0,
                 COLORS[r->vars[t->new_var[0]].color], P1, COLORS[r->vars[t->new_var[1]].color]);
}

// ----------------------------------------------------------------------------
// lookups

// "#W1012", "W1012" or "1012" -> order index, or -1
static int find_order(const RetailEnv* r, const char* id) {
    while (*id && (*id < '0' || *id > '9')) id++;
    if (!*id) return -1;
    char* end;
    long num = strtol(id, &end, 10);
    if (*end) return -1;
    int lo = 0, hi = r->norders - 1; // numbers increase with the index
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (r->orders0[mid].number == num) return mid;
        if (r->orders0[mid].number < num) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

// "v12" -> variant index, or -1
static int find_variant(const RetailEnv* r, const char* id) {
    if (id[0] != 'v' && id[0] != 'V') return -1;
    char* end;
    long v = strtol(id + 1, &end, 10) - 10;
    return (*end || id[1] == '\0' || v < 0 || v >= r->nvars) ? -1 : (int)v;
}

static int find_payment(const User* u, const char* text) {
    for (int k = 0; k < u->npay; k++)
        if (env_same_text(u->pay[k], text)) return k;
    return -1;
}

static void describe_item(const RetailEnv* r, int v, StrBuf* b) {
    strbuf_printf(b, "%s (%s) v%d", PRODUCTS[r->vars[v].product], COLORS[r->vars[v].color], v + 10);
}

// ----------------------------------------------------------------------------
// tools

// an order the agent may act on: it exists and its owner's identity is confirmed; else the
// observation to show
static int checked_order(const RetailEnv* r, const json_t* args, char* msg, size_t n) {
    const char* id = json_string_value(json_object_get(args, "order_id"));
    int o = find_order(r, id);
    if (o < 0) {
        snprintf(msg, n, "No order '%.40s'.", id);
        return -1;
    }
    if (r->confirmed != r->orders[o].user) {
        snprintf(msg, n, "Identity not confirmed: find the customer with find_user(name, zip) first.");
        return -1;
    }
    return o;
}

// resolves item_ids into positions in order o; 0 or -1 with msg
static int checked_items(const RetailEnv* r, const Order* o, const json_t* ids, int* pos, char* msg, size_t n) {
    size_t count = json_array_size(ids);
    if (count == 0 || count > MAX_ITEMS) {
        snprintf(msg, n, "item_ids must list 1 to %d items of the order.", MAX_ITEMS);
        return -1;
    }
    for (size_t k = 0; k < count; k++) {
        const char* id = json_string_value(json_array_get(ids, k));
        int v = find_variant(r, id);
        pos[k] = -1;
        for (int i = 0; i < o->nitems && v >= 0; i++)
            if (o->item[i] == v) pos[k] = i;
        if (pos[k] < 0) {
            snprintf(msg, n, "Item '%.20s' is not in order #W%d.", id, o->number);
            return -1;
        }
        for (size_t j = 0; j < k; j++)
            if (pos[j] == pos[k]) {
                snprintf(msg, n, "Item '%.20s' is listed twice.", id);
                return -1;
            }
    }
    return 0;
}

static int request_status_ok(const Order* o, const char* what, char* msg, size_t n) {
    if (o->status == S_RETURN || o->status == S_EXCHANGE) {
        snprintf(msg, n, "Order #W%d already has a %s; an order takes one request.", o->number,
                 o->status == S_RETURN ? "return request" : "exchange request");
        return 0;
    }
    if (o->status != S_DELIVERED) {
        snprintf(msg, n, "Order #W%d is %s; only delivered orders can be %s.", o->number, STATUS[o->status], what);
        return 0;
    }
    return 1;
}

static void tool_find_user(RetailEnv* r, const json_t* args, StrBuf* b) {
    const char* name = json_string_value(json_object_get(args, "name"));
    const char* zip = json_string_value(json_object_get(args, "zip"));
    for (int u = 0; u < r->nusers; u++) {
        const User* us = &r->users[u];
        if (!env_same_text(us->name, name) || !env_same_text(us->zip, zip)) continue;
        r->confirmed = u;
        strbuf_printf(b, "Found %s. Payment methods: ", us->name);
        for (int k = 0; k < us->npay; k++) strbuf_printf(b, "%s%s", k ? ", " : "", us->pay[k]);
        strbuf_printf(b, ". Orders: ");
        for (int k = 0; k < us->norders; k++)
            strbuf_printf(b, "%s#W%d", k ? ", " : "", r->orders[us->orders[k]].number);
        strbuf_printf(b, ".");
        return;
    }
    strbuf_printf(b, "No customer named '%.40s' with zip '%.10s'.", name, zip);
}

static void tool_get_order(RetailEnv* r, const json_t* args, StrBuf* b) {
    char msg[160];
    int o = checked_order(r, args, msg, sizeof(msg));
    if (o < 0) {
        strbuf_printf(b, "%s", msg);
        return;
    }
    r->viewed_order[o] = 1;
    const Order* od = &r->orders[o];
    strbuf_printf(b, "Order #W%d: %s, paid with %s. Items: ", od->number, STATUS[od->status],
                  r->users[od->user].pay[od->pay]);
    for (int k = 0; k < od->nitems; k++) {
        if (k) strbuf_printf(b, ", ");
        describe_item(r, od->item[k], b);
    }
    strbuf_printf(b, ".");
}

static void tool_get_product(RetailEnv* r, const json_t* args, StrBuf* b) {
    const char* name = json_string_value(json_object_get(args, "name"));
    for (int p = 0; p < N_PRODUCTS; p++) {
        if (!env_same_text(PRODUCTS[p], name)) continue;
        r->viewed_product[p] = 1;
        strbuf_printf(b, "%s:", PRODUCTS[p]);
        for (int v = 0; v < r->products[p].nvar; v++) {
            const Variant* va = &r->vars[r->products[p].var[v]];
            strbuf_printf(b, "%s %s v%d $%d%s", v ? "," : "", COLORS[va->color], r->products[p].var[v] + 10, va->price,
                          va->in_stock ? "" : " (sold out)");
        }
        strbuf_printf(b, ".");
        return;
    }
    strbuf_printf(b, "No product named '%.40s'.", name);
}

static void tool_cancel(RetailEnv* r, const json_t* args, StrBuf* b) {
    char msg[160];
    int o = checked_order(r, args, msg, sizeof(msg));
    if (o < 0) {
        strbuf_printf(b, "%s", msg);
        return;
    }
    r->writes++;
    Order* od = &r->orders[o];
    const char* reason = json_string_value(json_object_get(args, "reason"));
    int why = env_same_text(reason, REASONS[0]) ? 0 : env_same_text(reason, REASONS[1]) ? 1 : -1;
    if (od->status != S_PENDING)
        strbuf_printf(b, "Order #W%d is %s; only pending orders can be cancelled.", od->number, STATUS[od->status]);
    else if (why < 0) strbuf_printf(b, "reason must be 'no longer needed' or 'ordered by mistake'.");
    else {
        od->status = S_CANCELLED;
        od->reason = why;
        strbuf_printf(b, "Order #W%d cancelled; refund to %s.", od->number, r->users[od->user].pay[od->pay]);
    }
}

// return_items and exchange_items
static void tool_request(RetailEnv* r, const json_t* args, int exchange, StrBuf* b) {
    char msg[160];
    int o = checked_order(r, args, msg, sizeof(msg));
    if (o < 0) {
        strbuf_printf(b, "%s", msg);
        return;
    }
    r->writes++;
    Order* od = &r->orders[o];
    const User* us = &r->users[od->user];
    int pos[MAX_ITEMS], newv[MAX_ITEMS];
    const json_t* ids = json_object_get(args, "item_ids");
    if (!request_status_ok(od, exchange ? "exchanged" : "returned", msg, sizeof(msg)) ||
        checked_items(r, od, ids, pos, msg, sizeof(msg)) != 0) {
        strbuf_printf(b, "%s", msg);
        return;
    }
    int method = find_payment(us, json_string_value(json_object_get(args, "payment")));
    if (method < 0) {
        strbuf_printf(b, "'%.30s' is not a payment method of %s.", json_string_value(json_object_get(args, "payment")),
                      us->name);
        return;
    }
    size_t count = json_array_size(ids);
    int amount = 0;
    if (exchange) {
        const json_t* nids = json_object_get(args, "new_item_ids");
        if (json_array_size(nids) != count) {
            strbuf_printf(b, "new_item_ids must have one id per item in item_ids.");
            return;
        }
        for (size_t k = 0; k < count; k++) {
            const char* id = json_string_value(json_array_get(nids, k));
            int v = find_variant(r, id), old = od->item[pos[k]];
            if (v < 0 || r->vars[v].product != r->vars[old].product || v == old) {
                strbuf_printf(b, "'%.20s' is not another variant of the %s.", id, PRODUCTS[r->vars[old].product]);
                return;
            }
            if (!r->vars[v].in_stock) {
                strbuf_printf(b, "v%d is sold out.", v + 10);
                return;
            }
            newv[k] = v;
            amount += r->vars[v].price - r->vars[old].price;
        }
    }
    for (size_t k = 0; k < count; k++) {
        od->change[pos[k]] = exchange ? newv[k] : CHANGE_RETURNED;
        if (!exchange) amount += r->vars[od->item[pos[k]]].price;
    }
    od->status = exchange ? S_EXCHANGE : S_RETURN;
    od->method = method;
    if (exchange)
        strbuf_printf(b, "Exchange requested for order #W%d; %s of $%d %s %s.", od->number,
                      amount < 0 ? "refund" : "charge", amount < 0 ? -amount : amount, amount < 0 ? "to" : "on",
                      us->pay[method]);
    else strbuf_printf(b, "Return requested for order #W%d; refund of $%d to %s.", od->number, amount, us->pay[method]);
}

static int orders_match_goal(const RetailEnv* r) {
    for (int o = 0; o < r->norders; o++) {
        const Order* want = o == r->task->order ? &r->task->goal : &r->orders0[o];
        if (memcmp(&r->orders[o], want, sizeof(Order)) != 0) return 0;
    }
    return 1;
}

// ----------------------------------------------------------------------------
// vtable

static int rt_reset(Env* env, EnvSplit split, int task, uint64_t seed, EnvResult* out, EnvError* err) {
    (void)seed; (void)err; // the world seed fixes everything; see docs/ENVIRONMENTS.md
    RetailEnv* r = (RetailEnv*)env;
    r->task = &r->tasks[split][task];
    r->active = 1;
    r->done = 0;
    memcpy(r->orders, r->orders0, (size_t)r->norders * sizeof(Order));
    memset(r->viewed_order, 0, (size_t)r->norders);
    memset(r->viewed_product, 0, sizeof(r->viewed_product));
    r->confirmed = -1;
    r->writes = 0;
    env_result_text(out, r->task->statement);
    return 0;
}

static int rt_step(Env* env, const EnvAction* action, EnvResult* out, EnvError* err) {
    RetailEnv* r = (RetailEnv*)env;
    if (!r->active || r->done) {
        snprintf(err->msg, sizeof(err->msg), "retail: step called %s",
                 r->active ? "after the episode ended" : "before reset");
        return -1;
    }
    json_t* args;
    int t = env_parse_action(env, action, &args, out);
    if (t < 0) return 0;
    StrBuf b = {0};
    switch (t) {
    case T_FIND_USER: tool_find_user(r, args, &b); break;
    case T_GET_ORDER: tool_get_order(r, args, &b); break;
    case T_GET_PRODUCT: tool_get_product(r, args, &b); break;
    case T_CANCEL: tool_cancel(r, args, &b); break;
    case T_RETURN: tool_request(r, args, 0, &b); break;
    case T_EXCHANGE: tool_request(r, args, 1, &b); break;
    default: break;
    }
    json_decref(args);
    if (t == T_DONE) {
        int ok = orders_match_goal(r);
        r->done = 1;
        env_result_final(out, strdupCheck("Conversation ended."), ok ? 1.0 : 0.0);
        return 0;
    }
    env_result_take(out, strbuf_take(&b));
    return 0;
}

// ----------------------------------------------------------------------------
// scripted policy: confirms the customer, reads orders until one holds the products mentioned
// (oldest first, or newest first with latest_order), then makes the request and ends

static int rt_policy(Env* env, uint32_t known, EnvPolicyAction* out, EnvError* err) {
    RetailEnv* r = (RetailEnv*)env;
    if (!r->active || r->done) {
        snprintf(err->msg, sizeof(err->msg), "retail: no episode is running");
        return -1;
    }
    const RtTask* t = r->task;
    const User* us = &r->users[t->user];
    char q1[96], q2[96], q3[96];
    if (r->confirmed != t->user) {
        env_policy_set(out, "find_user", -1, "{\"name\": %s, \"zip\": %s}", env_json_str(us->name, q1, sizeof(q1)),
                       env_json_str(us->zip, q2, sizeof(q2)));
        return 0;
    }
    int newest_first = (known >> R_LATEST) & 1, chosen = -1;
    for (int k = 0; k < us->norders && chosen < 0; k++) {
        int o = us->orders[newest_first ? us->norders - 1 - k : k];
        if (!r->viewed_order[o]) {
            char id[16];
            snprintf(id, sizeof(id), "#W%d", r->orders[o].number);
            env_policy_set(out, "get_order", newest_first && k == 0 ? R_LATEST : -1, "{\"order_id\": \"%s\"}", id);
            return 0;
        }
        int found = 0;
        for (int p = 0; p < t->nprod; p++)
            for (int i = 0; i < r->orders[o].nitems; i++) found += r->vars[r->orders[o].item[i]].product == t->prod[p];
        if (found == t->nprod) chosen = o;
    }
    const Order* od = chosen >= 0 ? &r->orders[chosen] : NULL;
    // what to ask for: a cancel, or a return / exchange of these item positions
    int type = t->type, rule = -1;
    if (od && type == REQ_CANCEL && r->orders0[chosen].status == S_DELIVERED && ((known >> R_DELIVERED) & 1)) {
        type = REQ_RETURN;
        rule = R_DELIVERED;
    }
    if (!od) {
        env_policy_set(out, "done", -1, "{}");
        return 0;
    }
    char id[16];
    snprintf(id, sizeof(id), "#W%d", od->number);
    if (type == REQ_CANCEL) {
        if (r->writes) env_policy_set(out, "done", -1, "{}");
        else
            env_policy_set(out, "cancel_order", -1, "{\"order_id\": \"%s\", \"reason\": \"%s\"}", id,
                           REASONS[t->reason]);
        return 0;
    }
    int pos[MAX_ITEMS], np = 0;
    for (int i = 0; i < od->nitems; i++) {
        int want = t->type == REQ_CANCEL;
        for (int p = 0; p < t->nprod; p++) want |= r->vars[r->orders0[chosen].item[i]].product == t->prod[p];
        if (want) pos[np++] = i;
    }
    int newv[MAX_ITEMS];
    if (type == REQ_EXCHANGE) {
        for (int k = 0; k < np; k++) {
            const Variant* old = &r->vars[r->orders0[chosen].item[pos[k]]];
            if (!r->viewed_product[old->product]) {
                env_policy_set(out, "get_product", -1, "{\"name\": \"%s\"}", PRODUCTS[old->product]);
                return 0;
            }
            int p = old->product == t->prod[0] ? 0 : 1;
            newv[k] = variant_of(r, old->product, r->vars[t->new_var[p]].color);
        }
    }
    // one call with every item, or (without one_request) one call per item
    int one = (known >> R_ONE_REQUEST) & 1;
    int first = 0, count = np;
    if (!one) {
        if (r->writes >= np) {
            env_policy_set(out, "done", -1, "{}");
            return 0;
        }
        first = r->writes;
        count = 1;
    } else if (r->writes) {
        env_policy_set(out, "done", -1, "{}");
        return 0;
    }
    if (one && np > 1 && rule < 0) rule = R_ONE_REQUEST;
    int pay_own = (known >> R_PAYMENT) & 1;
    const char* pay = us->pay[pay_own ? od->pay : 0];
    if (pay_own && od->pay != 0 && rule < 0) rule = R_PAYMENT;
    StrBuf items = {0}, news = {0};
    for (int k = first; k < first + count; k++) {
        strbuf_printf(&items, "%s\"v%d\"", k > first ? ", " : "", r->orders0[chosen].item[pos[k]] + 10);
        if (type == REQ_EXCHANGE) strbuf_printf(&news, "%s\"v%d\"", k > first ? ", " : "", newv[k] + 10);
    }
    if (type == REQ_EXCHANGE)
        env_policy_set(out, "exchange_items", rule,
                       "{\"order_id\": \"%s\", \"item_ids\": [%s], \"new_item_ids\": [%s], \"payment\": %s}", id,
                       items.s, news.s, env_json_str(pay, q3, sizeof(q3)));
    else
        env_policy_set(out, "return_items", rule, "{\"order_id\": \"%s\", \"item_ids\": [%s], \"payment\": %s}", id,
                       items.s, env_json_str(pay, q3, sizeof(q3)));
    strbuf_free(&items);
    strbuf_free(&news);
    return 0;
}

// ----------------------------------------------------------------------------
// creation

static uint32_t rt_task_rules(const Env* env, EnvSplit split, int task) {
    return ((const RetailEnv*)env)->tasks[split][task].bites;
}

static void rt_destroy(Env* env) {
    RetailEnv* r = (RetailEnv*)env;
    free(r->vars);
    free(r->users);
    free(r->orders0);
    free(r->orders);
    free(r->viewed_order);
    free(r->tasks[0]);
    free(r->tasks[1]);
    env_base_free(env);
    free(r);
}

static const EnvVtbl RT_VTBL = {rt_reset, rt_step, rt_policy, rt_task_rules, rt_destroy};

Env* env_retail_create(uint64_t seed, int ntrain, int nheldout, EnvError* err) {
    (void)err;
    RetailEnv* r = callocCheck(1, sizeof(RetailEnv));
    env_base_init(&r->base, &RT_VTBL, "retail", RT_TOOLS, 7, RT_RULES, R_COUNT);
    env_base_builtin_tasks(&r->base, ntrain, nheldout);
    uint64_t rng = env_mix(seed, 0x5254);
    make_catalog(r, &rng);
    r->users = callocCheck((size_t)(ntrain + nheldout + 1), sizeof(User));
    // held-out tasks first: the evaluation set must not change with env.train_tasks
    const int counts[2] = {ntrain, nheldout};
    for (int s = 1; s >= 0; s--) {
        r->tasks[s] = callocCheck((size_t)(counts[s] ? counts[s] : 1), sizeof(RtTask));
        for (int i = 0; i < counts[s]; i++)
            make_task(r, &r->tasks[s][i], r->nusers++, env_mix(env_mix(seed, (uint64_t)s + 201), (uint64_t)i));
    }
    r->orders = mallocCheck((size_t)(r->norders ? r->norders : 1) * sizeof(Order));
    r->viewed_order = mallocCheck((size_t)(r->norders ? r->norders : 1));
    return &r->base;
}
