/* Data for the commands that train or evaluate: loading a dataset the way the
 * model needs it (its chat format, EOS and length), and a packer seen as the
 * trainer's batch stream. */
#include "cli/data_setup.h"

#include <stdio.h>
#include <string.h>

static int ps_seek(void *ctx, int64_t epoch, int64_t index, tune_err *err)
{
    struct packer_stream *s = ctx;
    s->epoch0 = epoch;
    return packer_seek(&s->p, (struct packer_pos){epoch, index}, err);
}

static void ps_tell(void *ctx, int64_t *epoch, int64_t *index)
{
    struct packer_pos pos = packer_tell(&((struct packer_stream *)ctx)->p);
    *epoch = pos.epoch;
    *index = pos.index;
}

static int ps_next(void *ctx, struct llama_batch *b, tune_err *err)
{
    (void)err;
    struct packer_stream *s = ctx;
    if (s->one_pass && packer_tell(&s->p).epoch != s->epoch0)
        return 0;
    struct packed_batch pb;
    packer_next(&s->p, &pb);
    *b = pb.batch;
    return 1;
}

int packer_stream_init(struct packer_stream *s, struct batch_stream *bs, const struct dataset *d, const size_t *idx,
                       size_t n, int64_t seq, int64_t rows, uint64_t seed, bool one_pass, tune_err *err)
{
    struct packer_options po = {seq, rows, seed, !one_pass};
    if (packer_init(&s->p, d, idx, n, &po, err))
        return -1;
    s->one_pass = one_pass;
    *bs = (struct batch_stream){s, ps_seek, ps_tell, ps_next, packer_batches_in_epoch(&s->p, 0), (int64_t)s->p.n};
    return 0;
}

int data_setup_chat_format(const struct data_request *a, bool *chat, enum chat_format *format, tune_err *err)
{
    if (a->chat_format) {
        *chat = true;
        return chat_format_parse(a->chat_format, format, err) ? err_prefix(err, "--chat-format") : 0;
    }
    tune_err ignored;
    *chat = chat_format_for_model(spec_model_type(a->spec->arch), a->spec->vocab, format, &ignored) == 0;
    return 0;
}

int data_setup_load(const struct data_request *a, struct tokenizer *tok, int32_t eos, struct dataset *d,
                    struct data_template **tmpl, tune_err *err)
{
    struct data_options o;
    data_options_init(&o, tok);
    o.eos_id = eos;
    o.max_length = a->max_length;
    if (a->template_path) {
        if (data_template_load(tmpl, a->template_path, err))
            return -1;
        o.tmpl = *tmpl;
    }
    struct chat_options chat_opt = {.date = a->chat_date, .reasoning_effort = a->reasoning_effort};
    if (chat_effort_check(a->reasoning_effort, err))
        return err_prefix(err, "--reasoning-effort");
    o.chat_opt = &chat_opt;
    if (data_setup_chat_format(a, &o.chat, &o.chat_format, err))
        return -1;
    return dataset_load(d, a->data, &o, err);
}

