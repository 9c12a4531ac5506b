"""The conditional GAN of pix2pix, for colour: what one training step computes.

    G: L -> ab                                     the generator (with hints=true: (L, H) -> ab, H the
                                                   colour hints simulated from ab, colorgan/hints.py)
    D: (L, ab) -> a grid of patch scores           the critic
    colour(G) = w_cf * colourfulness deficit(G(L), ab) + w_p * perceptual distance(G(L), ab)
                + w_cls * rebalanced cross-entropy(class logits of G(L), soft-encoded ab)

    L1(G) = |G(L) - ab|_1, or with --l1_rebalance < 1 each pixel times the rebalancing weight of ab's class

    stage 1 (pretraining):  min_G  w_l1' L1(G) + colour(G)
    stage 2 (adversarial):  min_D  loss_D(D(L, ab), D(L, sg[G(L)]))  [+ w_gp * gradient penalty]
                            min_G  w_gan loss_G(D(L, G(L))) + w_l1 L1(G) + colour(G)

A generator that takes colour hints gets them simulated from each photo's true colours (hints.simulate:
none for --hint_none_share of the photos, else a geometric number of points), seeded by (seed, step,
replica) so that a resumed run replays them; G(L) below then stands for G(L, H).

One forward pass of G per step, as in pix2pix: the critic learns from the prediction with its gradient
stopped, then the generator's loss reuses that pass through the updated critic. These are per-replica
bodies; the loop runs them under its tf.distribute strategy, and every loss is averaged over the global
batch (``tf.nn.compute_average_loss``) so that gradients are right for any number of replicas.
"""
import keras
import tensorflow as tf

from colorgan import color, hints, losses
from colorgan.models import hint_branch


class ColorGAN:
    """The generator, the critic, their objective and the two updates."""

    def __init__(self, cfg, generator, critic, g_opt, d_opt, e_opt=None, encoder=None, features=None,
                 class_weights=None, l1_weights=None):
        self.cfg = cfg
        self.generator, self.critic = generator, critic
        # The class loss reads the head's logits: the same layers, with that tensor as a second output.
        self.with_logits = (keras.Model(generator.input, [generator.output, generator.get_layer("ab_logits").output])
                            if cfg.class_weight else None)
        # (Q,) rebalancing weights of the class loss and of L1, variables kept in the checkpoint
        self.class_weights, self.l1_weights = class_weights, l1_weights
        self.objective = losses.OBJECTIVES[cfg.objective]()
        self.g_opt, self.d_opt, self.e_opt = g_opt, d_opt, e_opt
        self.encoder = encoder    # a pretrained encoder inside G, trained by e_opt at its own rate
        self.features = features  # the perceptual loss's feature network
        self.takes_hints = hint_branch.takes_hints(generator)

    def mean(self, per_example):
        return tf.nn.compute_average_loss(per_example, global_batch_size=self.cfg.batch_size)

    # ----------------------------------------------------------------------------------------------
    # The losses

    def generator_input(self, l, ab, step):
        """L, and for a generator that takes hints the hint maps simulated from the true colours ``ab``."""
        if not self.takes_hints:
            return l
        cfg = self.cfg
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = tf.stack([tf.cast(cfg.seed, tf.int64) * 1000003 + tf.cast(step, tf.int64),
                         1_000_000 + tf.cast(replica, tf.int64)])
        maps = hints.simulate(ab, seed, cfg.hint_none_share, 1.0 / cfg.hint_points_mean, cfg.hint_max_patch)
        return [l, maps]

    def generate(self, l, ab, step):
        """G(L) (or G(L, H)) in training mode, and the class head's logits when the class loss reads them."""
        inputs = self.generator_input(l, ab, step)
        if self.with_logits is None:
            return self.generator(inputs, training=True), None
        return self.with_logits(inputs, training=True)

    def l1_term(self, fake_ab, real_ab):
        """L1(G) above, and for the logs plain L1, which stays comparable between runs."""
        plain = self.mean(losses.l1(fake_ab, real_ab))
        if self.l1_weights is None:
            return plain, {"generator/l1": plain}
        rebalanced = self.mean(losses.rebalanced_l1(fake_ab, real_ab, self.l1_weights))
        return rebalanced, {"generator/l1": plain, "generator/l1_rebalanced": rebalanced}

    def colour_terms(self, l, fake_ab, real_ab, logits=None):
        """colour(G) above, and its parts for the logs."""
        cfg, logs, total = self.cfg, {}, 0.0
        if cfg.class_weight:
            logs["generator/classes"] = self.mean(losses.rebalanced_cross_entropy(logits, real_ab, self.class_weights))
            total += cfg.class_weight * logs["generator/classes"]
        if not (cfg.colourfulness_weight or cfg.perceptual_weight):
            return total, logs
        fake_rgb, real_rgb = color.model_to_rgb(l, fake_ab), color.model_to_rgb(l, real_ab)
        if cfg.colourfulness_weight:
            logs["generator/colourfulness"] = self.mean(losses.colourfulness_loss(fake_rgb, real_rgb))
            total += cfg.colourfulness_weight * logs["generator/colourfulness"]
        if cfg.perceptual_weight:
            logs["generator/perceptual"] = self.mean(losses.perceptual_loss(self.features, fake_rgb, real_rgb))
            total += cfg.perceptual_weight * logs["generator/perceptual"]
        return total, logs

    def critic_loss(self, real, fake, step, k):
        """loss_D on one batch of real and fake Lab images, with the WGAN-GP penalty where it applies."""
        cfg, logs = self.cfg, {}
        real_out = self.critic(real, training=True)
        fake_out = self.critic(fake, training=True)
        per_example = self.objective.critic_loss(real_out, fake_out)
        if self.objective.uses_gradient_penalty:
            # Seeded by (seed, step, k, replica): a resumed run replays exactly.
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            seed = tf.stack([tf.cast(cfg.seed, tf.int64) * 1000003 + step, k * 1024 + tf.cast(replica, tf.int64)])
            alpha = tf.random.stateless_uniform([tf.shape(real)[0], 1, 1, 1], seed)
            penalty = losses.gradient_penalty(self.critic, real, fake, alpha)
            logs["critic/gradient_penalty"] = self.mean(penalty)
            logs["critic/wasserstein"] = self.mean(-per_example)
            per_example = per_example + cfg.gp_weight * penalty
        else:
            logs.update(self.critic_accuracy(real_out, fake_out))
        return self.mean(per_example), logs

    def critic_accuracy(self, real_out, fake_out):
        """Share of patches judged right: probability (vanilla) or score (LSGAN) on the right side of 0.5."""
        to_p = tf.sigmoid if self.cfg.objective == "vanilla" else tf.identity
        batch = tf.shape(real_out)[0]
        right = lambda out, real: tf.reduce_mean(tf.cast(
            (tf.reshape(to_p(tf.cast(out, tf.float32)), [batch, -1]) > 0.5) == real, tf.float32), 1)
        return {"critic/accuracy_real": self.mean(right(real_out, True)),
                "critic/accuracy_fake": self.mean(right(fake_out, False))}

    # ----------------------------------------------------------------------------------------------
    # The updates

    def pretrain_update(self, l, ab, step=0):
        with tf.GradientTape() as tape:
            fake_ab, logits = self.generate(l, ab, step)
            l1, l1_logs = self.l1_term(fake_ab, ab)
            colour, logs = self.colour_terms(l, fake_ab, ab, logits)
            loss = self.cfg.pretrain_l1_weight * l1 + colour
        self.apply_generator(tape, loss)
        return {**l1_logs, **logs}

    def adversarial_update(self, l, ab, step):
        cfg = self.cfg
        real = tf.concat([l, ab], axis=-1)
        logs = {}
        with tf.GradientTape() as generator_tape:
            fake_ab, logits = self.generate(l, ab, step)
            fake = tf.concat([l, tf.cast(fake_ab, l.dtype)], axis=-1)
            with generator_tape.stop_recording():
                for k in range(cfg.critic_steps):  # WGAN-GP: several critic steps on the step's batch
                    with tf.GradientTape() as critic_tape:
                        critic_loss, critic_logs = self.critic_loss(real, tf.stop_gradient(fake), step, k)
                    self.apply(self.d_opt, critic_tape, critic_loss, self.critic.trainable_variables)
                    logs.update(critic_logs, **{"critic/loss": critic_loss})
            gan = self.mean(self.objective.generator_loss(self.critic(fake, training=True)))
            l1, l1_logs = self.l1_term(fake_ab, ab)
            colour, colour_logs = self.colour_terms(l, fake_ab, ab, logits)
            loss = cfg.gan_weight * gan + cfg.l1_weight * l1 + colour
        self.apply_generator(generator_tape, loss)
        logs.update({"generator/loss": loss, "generator/gan": gan, **l1_logs, **colour_logs})
        return logs

    def gradients(self, opt, tape, loss, variables):
        """This replica's share of the gradient, clipped by the norm of the whole (global) gradient.

        Keras clips inside ``apply``, before it sums the replicas' shares, so the applied gradient could
        reach clip_norm times the replica count. With clipping or loss scaling over several replicas the
        shares are summed here first: clipping sees the global norm, and every replica takes the same
        finite-or-skip decision. Each then passes on 1/R of the sum, which the optimiser adds up again.
        """
        with tape:  # the scaling must be on the tape, or no gradient reaches the weights
            scaled = opt.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        scaled = hasattr(opt, "inner_optimizer")
        if replicas > 1 and (self.cfg.clip_norm or scaled):
            grads = [g / replicas for g in context.all_reduce("SUM", grads)]
        if self.cfg.clip_norm:
            # In the units of the scaled loss, and per share when the shares were summed above.
            limit = self.cfg.clip_norm * opt.scale_loss(1.0) / (replicas if replicas > 1 else 1)
            grads, _ = tf.clip_by_global_norm(grads, limit)
        return grads

    def apply(self, opt, tape, loss, variables):
        opt.apply(self.gradients(opt, tape, loss, variables), variables)

    def apply_generator(self, tape, loss):
        """One generator update; a pretrained encoder that trains gets its own optimiser and rate."""
        variables = self.generator.trainable_variables
        if self.e_opt is None or not self.encoder.trainable:
            return self.apply(self.g_opt, tape, loss, variables)
        in_encoder = {id(v) for v in self.encoder.trainable_variables}
        encoder = [v for v in variables if id(v) in in_encoder]
        decoder = [v for v in variables if id(v) not in in_encoder]
        grads = self.gradients(self.g_opt, tape, loss, encoder + decoder)  # clipped as one generator
        self.e_opt.apply(grads[:len(encoder)], encoder)
        self.g_opt.apply(grads[len(encoder):], decoder)
