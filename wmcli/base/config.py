"""Every section of a recipe as a dataclass, each field documented and checked where it is declared.

A recipe (wmcli.base.recipe) has one section per component; this module declares them all,
and each class names the module it configures. They live together, below everything else,
because a recipe must load and be checked before torch, ALE or a training loop is imported
(`wmcli recipes show`, checking a recipe before a run starts, and every module that rebuilds a
recipe from a checkpoint), and the modules they configure import torch. Each class checks
every value in `__post_init__`: a bad one raises `ConfigValueError`, which names the field,
and recipe loading turns it into one line naming the recipe key (`run.epsilon=2: ...`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

SAMPLERS = {"euler": "edm", "heun": "edm", "ddim": "ddpm", "ddpm": "ddpm"}
"""Each sampler and the denoiser formulation it works with."""


class ConfigValueError(ValueError):
    """A config value out of its range: `key` is the field (dotted within nested sections)."""

    def __init__(self, key: str, value, message: str):
        super().__init__(f"{key} {message}, got {value!r}")
        self.key, self.value, self.message = key, value, message


def _check(cfg, name: str, ok: bool, message: str) -> None:
    if not ok:
        raise ConfigValueError(name, getattr(cfg, name), message)


def _at_least(cfg, least: int | float, *names: str) -> None:
    for name in names:
        _check(cfg, name, getattr(cfg, name) >= least, f"must be at least {least}")


def _positive(cfg, *names: str) -> None:
    for name in names:
        _check(cfg, name, getattr(cfg, name) > 0, "must be greater than 0")


def _probability(cfg, name: str) -> None:
    _check(cfg, name, 0.0 <= getattr(cfg, name) <= 1.0, "must be between 0 and 1")


def _channels(cfg, name: str) -> None:
    ch = getattr(cfg, name)
    _check(cfg, name, len(ch) > 0 and min(ch) >= 1, "must list at least one level, each of 1 or more channels")


def _data_path(cfg) -> None:
    _check(cfg, "data", cfg.data in ("auto", "ram", "disk"), "must be 'auto', 'ram' or 'disk'")
    _check(cfg, "ram_budget_gb", cfg.ram_budget_gb is None or cfg.ram_budget_gb > 0, "must be positive, or null")


def _sample_weights(cfg) -> None:
    w = cfg.sample_weights
    _check(cfg, "sample_weights", w is None or (len(w) > 0 and min(w) >= 0 and abs(sum(w) - 1) <= 1e-6),
           "must be non-negative and sum to 1, e.g. [0.1, 0.1, 0.1, 0.7] (or null for uniform sampling)")


# ---- data ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvConfig:
    """How frames and actions are produced (wmcli.data.env); the `env` section."""

    game: str = "Breakout"
    """Game: a short ALE name (`Breakout`, `MsPacman`), a gymnasium id (`ALE/Breakout-v5`,
    `BreakoutNoFrameskip-v4`), a ROM id (`ms_pacman`), or a MinAtar game (`minatar:Breakout`)."""
    frame_size: int = 64
    """Frames are frame_size x frame_size RGB (DIAMOND: 64)."""
    frame_skip: int = 4
    """Raw frames per agent step; the observation max-pools the last two (DIAMOND: 4). ALE only."""
    noop_max: int = 30
    """No-op frames at reset: uniform in [0, noop_max - 1], as ale-py's vector env draws them (DIAMOND:
    30, with its gymnasium wrapper drawing in [1, 30])."""
    sticky_prob: float = 0.0
    """Probability of repeating the previous action (DIAMOND: 0; ALE v5 default: 0.25)."""
    max_episode_frames: int = 108_000
    """Episode cap in raw frames, 30 minutes of play (for MinAtar: in steps x frame_skip)."""
    mode: int | None = None
    """ALE game mode (None: the game's default). Forces the gymnasium path."""
    difficulty: int | None = None
    """ALE difficulty (None: the game's default). Forces the gymnasium path."""

    def __post_init__(self):
        _check(self, "game", bool(self.game.strip()), "name a game, e.g. Breakout or minatar:Breakout")
        _at_least(self, 8, "frame_size")
        _at_least(self, 1, "frame_skip", "max_episode_frames")
        _at_least(self, 0, "noop_max")
        _check(self, "sticky_prob", 0.0 <= self.sticky_prob < 1.0, "must be in [0, 1)")
        for name in ("mode", "difficulty"):
            _check(self, name, getattr(self, name) is None or getattr(self, name) >= 0, "must be null or 0 or more")

    def protocol(self) -> dict:
        """The frame protocol as recorded in stores and checkpoints (everything but the game)."""
        d = asdict(self)
        del d["game"]
        d["max_pool"] = "last 2 raw frames"
        d["resize"] = "area"
        d["action_set"] = "minimal"
        d["rewards"] = "raw"
        return d


# ---- networks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UNetConfig:
    """The denoiser's inner network (wmcli.models.nets.UNet); the `denoiser.unet` section."""

    channels: tuple[int, ...] = (64, 64, 64, 64)
    """Channels at each resolution level (DIAMOND: [64, 64, 64, 64], 64 -> 32 -> 16 -> 8)."""
    depths: tuple[int, ...] = (2, 2, 2, 2)
    """Residual blocks per level on the way down; one more on the way up (DIAMOND: 2)."""
    attn_depths: tuple[bool, ...] = (False, False, False, False)
    """Self-attention after the blocks of each level (DIAMOND: none; the middle always has it)."""
    cond_channels: int = 256
    """Width of the conditioning vector (noise level + actions) (DIAMOND: 256)."""
    attn_head_dim: int = 8
    """Channels per attention head (DIAMOND: 8)."""
    grad_checkpointing: bool = False
    """Recompute block activations in the backward pass: less memory, about 30% more compute."""

    def __post_init__(self):
        _channels(self, "channels")
        for name in ("depths", "attn_depths"):
            _check(self, name, len(getattr(self, name)) == len(self.channels),
                   f"needs one entry per level of unet.channels ({len(self.channels)})")
        _check(self, "depths", min(self.depths) >= 0, "must be 0 or more blocks per level")
        _at_least(self, 1, "cond_channels", "attn_head_dim")


@dataclass(frozen=True)
class VideoConfig:
    """The video denoiser (wmcli.models.video_denoiser): several future frames denoised jointly;
    the `denoiser.video` section, read when denoiser.kind is "video" (docs/video_model.md)."""

    window: int = 4
    """Future frames the model denoises together (its largest window; training stages may use
    shorter ones, train_wm.video.stages)."""
    temporal_attn: tuple[bool, ...] = (False, True, True)
    """Attention across the frames of the window after the blocks of each U-Net level (one entry
    per level of unet.channels); the middle blocks always have it."""
    causal: bool = True
    """Temporal attention lets a frame see only itself and the frames before it (false: all frames)."""
    per_frame_noise: bool = True
    """Training draws a noise level per frame (diffusion forcing, Chen et al., 2024), so one model
    serves joint, staggered and frame-by-frame sampling; false: one level per window (joint only)."""
    unknown_action_prob: float = 0.25
    """Training hides the actions of a window's later frames (from a random frame on) with this
    probability, as the staggered sampler must when an agent has not chosen them yet; 0: never."""

    def __post_init__(self):
        _at_least(self, 1, "window")
        _probability(self, "unknown_action_prob")


@dataclass(frozen=True)
class DenoiserConfig:
    """The next-frame denoiser (wmcli.models.denoiser); the `denoiser` section."""

    kind: str = "frame"
    """"frame": DIAMOND's, one next frame at a time; "video": a space-time model that denoises a
    window of future frames jointly (wmcli.models.video_denoiser, `denoiser.video`; EDM only)."""

    formulation: str = "edm"
    """"edm" (DIAMOND's) or "ddpm" (epsilon prediction)."""
    num_context: int = 4
    """Past frames (and actions) the next frame is conditioned on (DIAMOND: 4)."""
    sigma_data: float = 0.5
    """EDM: standard deviation of the data (DIAMOND: 0.5)."""
    sigma_offset_noise: float = 0.3
    """EDM: std of a per-(sample, channel) constant added to the noise; 0 turns it off (DIAMOND: 0.3)."""
    train_sigma_loc: float = -0.4
    """EDM: training ln(sigma) ~ N(loc, scale^2) (DIAMOND: -0.4)."""
    train_sigma_scale: float = 1.2
    """EDM: see train_sigma_loc (DIAMOND: 1.2)."""
    train_sigma_min: float = 2e-3
    """EDM: training sigmas are clipped to [min, max] (DIAMOND: 2e-3, 20)."""
    train_sigma_max: float = 20.0
    """EDM: see train_sigma_min."""
    ddpm_timesteps: int = 1000
    """DDPM: number of training timesteps T (Ho et al.: 1000)."""
    ddpm_beta_schedule: str = "linear"
    """DDPM: "linear" (betas 1e-4 .. 0.02, Ho et al.) or "cosine" (Nichol & Dhariwal, 2021)."""
    context_noise_max: float = 0.0
    """Noise augmentation: context frames get Gaussian noise of std ~ U[0, max] in training,
    and the std conditions the network (GameNGen); 0 turns it off (DIAMOND: off)."""
    action_emb_dim: int = 64
    """Width of each action's embedding; the n embeddings are flattened into cond (DIAMOND: 64)."""
    unet: UNetConfig = field(default_factory=UNetConfig)
    video: VideoConfig = field(default_factory=VideoConfig)

    def __post_init__(self):
        _check(self, "kind", self.kind in ("frame", "video"), "must be 'frame' or 'video'")
        _check(self, "formulation", self.formulation in ("edm", "ddpm"), "must be 'edm' or 'ddpm'")
        if self.kind == "video":
            _check(self, "formulation", self.formulation == "edm", "must be 'edm' for a video denoiser (kind: video)")
            if len(self.video.temporal_attn) != len(self.unet.channels):
                raise ConfigValueError("video.temporal_attn", list(self.video.temporal_attn),
                                       f"needs one entry per level of denoiser.unet.channels ({len(self.unet.channels)})")
        _check(self, "ddpm_beta_schedule", self.ddpm_beta_schedule in ("linear", "cosine"),
               "must be 'linear' or 'cosine'")
        _at_least(self, 1, "num_context", "action_emb_dim")
        _at_least(self, 2, "ddpm_timesteps")
        _positive(self, "sigma_data", "train_sigma_min")
        _at_least(self, 0, "sigma_offset_noise", "train_sigma_scale", "context_noise_max")
        _check(self, "train_sigma_max", self.train_sigma_max >= self.train_sigma_min,
               f"must be at least train_sigma_min ({self.train_sigma_min})")


@dataclass(frozen=True)
class SamplerConfig:
    """How imagined frames are generated (wmcli.models.sampler); the `sampler` section."""

    name: str = "euler"
    """"euler" or "heun" (EDM models); "ddim" or "ddpm" (DDPM models) (DIAMOND: euler)."""
    num_steps: int = 3
    """Denoising steps per frame (DIAMOND: 3)."""
    sigma_min: float = 2e-3
    """EDM: smallest noise level of the Karras schedule (DIAMOND: 2e-3)."""
    sigma_max: float = 5.0
    """EDM: largest noise level, where sampling starts (DIAMOND: 5)."""
    rho: float = 7.0
    """EDM: Karras schedule exponent (DIAMOND, Karras et al.: 7)."""
    s_churn: float = 0.0
    """EDM: stochasticity (Karras et al.'s S_churn); 0 is a deterministic ODE solve (DIAMOND: 0)."""
    s_tmin: float = 0.0
    """EDM: churn only for sigma in [s_tmin, s_tmax]."""
    s_tmax: float = float("inf")
    """EDM: see s_tmin."""
    s_noise: float = 1.0
    """EDM: scale of the churn noise."""
    eta: float = 0.0
    """DDIM: 0 is deterministic, 1 matches DDPM's ancestral variance."""
    start_noise: str = "sigma_max"
    """EDM: the noise sampling starts from: "sigma_max", N(0, sigma_max^2) as Karras et al.'s
    schedule assumes, or "unit", N(0, 1) while the first step is still taken at sigma_max, as
    DIAMOND's sampler does (DIAMOND's agents were trained in dreams sampled that way: the
    atari100k recipe and imported DIAMOND models use "unit")."""
    quantize: str = "round"
    """How each denoised estimate is put on the 256 levels of an 8-bit frame: "round" (the nearest
    level) or "truncate" (DIAMOND's `.byte()`: the level below, about half a level darker on
    average; the atari100k recipe and imported DIAMOND models use it, to dream as DIAMOND does)."""
    video_schedule: str = "staggered"
    """Video denoisers only: "joint" (the whole window through the num_steps schedule together,
    then its frames one by one) or "staggered" (frames enter the window evals_per_frame network
    evaluations apart and leave it clean one by one: diffusion forcing's pyramid, Horizon
    Imagination's sub-frame budgets) (docs/video_model.md)."""
    evals_per_frame: float = 1.0
    """Staggered schedule: network evaluations per imagined frame once the window is full, an
    integer (1, 2, 3: num_steps makes it frame by frame) or a fraction 1/m (0.5: two frames leave
    each evaluation). The window holds m * ceil(num_steps / evals) frames, at most denoiser.video.window."""

    def __post_init__(self):
        _check(self, "name", self.name in SAMPLERS, f"must be one of {', '.join(SAMPLERS)}")
        _check(self, "video_schedule", self.video_schedule in ("joint", "staggered"), "must be 'joint' or 'staggered'")
        e = self.evals_per_frame
        _check(self, "evals_per_frame", e > 0 and (float(e).is_integer() or float(1 / e).is_integer()),
               "must be a whole number (1, 2, 3) or one over one (0.5, 0.25)")
        _check(self, "start_noise", self.start_noise in ("sigma_max", "unit"), "must be 'sigma_max' or 'unit'")
        _check(self, "quantize", self.quantize in ("round", "truncate"), "must be 'round' or 'truncate'")
        _at_least(self, 1, "num_steps")
        _positive(self, "sigma_min", "rho")
        _check(self, "sigma_max", self.sigma_max > self.sigma_min, f"must exceed sigma_min ({self.sigma_min})")
        _at_least(self, 0, "s_churn", "s_tmin", "s_noise", "eta")


@dataclass(frozen=True)
class RewEndConfig:
    """The reward/end model (wmcli.models.reward_end); the `reward_end` section."""

    channels: tuple[int, ...] = (32, 32, 32, 32)
    """Encoder channels per level; each level but the last halves the resolution (DIAMOND: 32 x 4)."""
    depths: tuple[int, ...] = (2, 2, 2, 2)
    """Residual blocks per level (DIAMOND: 2)."""
    cond_channels: int = 128
    """Width of the action embedding fed to adaptive group norm (DIAMOND: 128)."""
    lstm_dim: int = 512
    """LSTM hidden size (DIAMOND: 512)."""
    attn_head_dim: int = 8
    """Channels per head of the two attention blocks after the encoder."""

    def __post_init__(self):
        _channels(self, "channels")
        _check(self, "depths", len(self.depths) == len(self.channels) and min(self.depths) >= 0,
               f"needs one entry (0 or more) per level of reward_end.channels ({len(self.channels)})")
        _at_least(self, 1, "cond_channels", "lstm_dim", "attn_head_dim")


@dataclass(frozen=True)
class ActorCriticConfig:
    """The agent (wmcli.models.actor_critic); the `actor_critic` section."""

    channels: tuple[int, ...] = (32, 32, 64, 64)
    """Channels of the residual blocks, each followed by a 2x2 max-pool (DIAMOND: 32, 32, 64, 64)."""
    lstm_dim: int = 512
    """LSTM cell size (DIAMOND: 512)."""
    gamma: float = 0.985
    """Discount (DIAMOND: 0.985)."""
    lambda_: float = 0.95
    """Lambda of the lambda-returns (DIAMOND: 0.95)."""
    entropy_weight: float = 1e-3
    """Weight of the policy entropy bonus (DIAMOND: 1e-3)."""
    value_weight: float = 1.0
    """Weight of the value loss (DIAMOND: 1)."""

    def __post_init__(self):
        _channels(self, "channels")
        _at_least(self, 1, "lstm_dim")
        _check(self, "gamma", 0.0 < self.gamma <= 1.0, "must be in (0, 1]")
        _probability(self, "lambda_")
        _at_least(self, 0, "entropy_weight", "value_weight")


# ---- training --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoStage:
    """One stage of a video model's training (an entry of train_wm.video.stages)."""

    steps: int
    """Training steps of this stage (the last stage runs on to train_wm.steps)."""
    window: int
    """Future frames per training window in this stage (at most denoiser.video.window)."""
    still_fraction: float = 1.0
    """Curriculum: each batch keeps the stillest this-fraction of the segments drawn (by mean absolute
    frame difference), so a stage at 0.25 trains on still scenes; 1.0: every segment drawn."""

    def __post_init__(self):
        _at_least(self, 1, "steps", "window")
        _check(self, "still_fraction", 0.0 < self.still_fraction <= 1.0, "must be in (0, 1]")


@dataclass(frozen=True)
class VideoTrainConfig:
    """How a video denoiser is trained (kind: video); the `train_wm.video` section (docs/video_model.md)."""

    stages: tuple[VideoStage, ...] = ()
    """Growing windows and a still-to-fast curriculum: a list of {steps, window, still_fraction};
    empty: windows of denoiser.video.window, every segment, throughout."""
    rew_end_weight: float = 0.1
    """Joint loss: weight of the reward/end model's loss on the denoiser's estimates of the window
    (its gradient reaches the denoiser; the reward/end model keeps its own step); 0: off."""
    action_weight: float = 0.05
    """Joint loss: weight of the action-consistency term, the inverse-dynamics head recovering each
    action from consecutive denoised frames (cross-entropy); 0: off."""

    def __post_init__(self):
        _at_least(self, 0, "rew_end_weight", "action_weight")


@dataclass(frozen=True)
class TrainWMConfig:
    """The world model's training loop (wmcli.training.train_wm); the `train_wm` section."""

    steps: int = 10_000
    """Gradient steps, each one for the denoiser and one for the reward/end model (DIAMOND's first epoch: 10,000)."""
    batch_size: int = 32
    """Segments per denoiser batch (DIAMOND: 32)."""
    lr: float = 1e-4
    """AdamW learning rate after warm-up (DIAMOND: 1e-4)."""
    adam_eps: float = 1e-8
    """AdamW epsilon (DIAMOND: 1e-8)."""
    weight_decay: float = 1e-2
    """AdamW weight decay, on Linear/Conv/LSTM weights only (DIAMOND: 1e-2)."""
    warmup_steps: int = 100
    """Linear learning-rate warm-up (DIAMOND: 100)."""
    grad_clip_denoiser: float = 1.0
    """Gradient-norm clip for the denoiser (DIAMOND: 1)."""
    grad_clip_rew_end: float = 100.0
    """Gradient-norm clip for the reward/end model (DIAMOND: 100)."""
    autoregressive_steps: int = 1
    """Extra targets predicted from the model's own detached estimate of the previous one (DIAMOND: 1)."""
    rew_end_batch_size: int = 32
    """Sequences per reward/end batch (DIAMOND: 32)."""
    rew_end_seq_len: int = 19
    """Steps per reward/end sequence: burn-in + imagination horizon (DIAMOND: 4 + 15)."""
    sample_weights: tuple[float, ...] | None = (0.1, 0.1, 0.1, 0.7)
    """Recency weighting of training segments (denoiser and reward/end): the episodes, oldest first,
    in len(weights) chunks of equal count, chunk i drawn with probability weights[i] (DIAMOND:
    [0.1, 0.1, 0.1, 0.7]); null: uniform over all segments."""
    end_on_life_loss: bool = True
    """Train the end head with a life loss counted as an end (DIAMOND: true)."""
    val_fraction: float = 0.1
    """Share of episodes held out for validation, chosen by a hash of their file names; unused when the
    store records its held-out episodes (`wmcli store split`): then exactly those are held out."""
    val_batches: int = 4
    """Batches per validation."""
    log_every: int = 50
    """Steps between metric lines."""
    val_every: int = 500
    """Steps between validations (and at the end)."""
    checkpoint_every: int = 1000
    """Steps between checkpoints (and at the end)."""
    channels_last: bool = True
    """Use channels_last memory format for the convolutions (faster on CUDA and most CPUs)."""
    data: str = "auto"
    """Where training reads segments from: "ram" (every episode loaded into memory first, as DIAMOND
    does), "disk" (each segment read from the store's HDF5 files when drawn, `data_workers`
    processes reading ahead), or "auto": disk when the episodes' frames exceed `ram_budget_gb`
    (docs/store.md). Both give the same batches for the same seed. Validation episodes follow the same rule."""
    ram_budget_gb: float | None = None
    """With data auto: the most memory (GB, 1e9 bytes) the episodes' frames may take in RAM; null:
    half the memory available when training starts (MemAvailable), shared among a node's ranks."""
    data_workers: int = 1
    """On the disk path: processes that read upcoming steps' segments ahead of the training step,
    the frames handed over through shared memory (/dev/shm); 0: read in the training process.
    Measured on 2 busy CPU cores (docs/performance.md), with 1 worker an atari100k step waited
    ~0 ms for its segments beside a CPU training step, 1.7 ms beside a 30 ms GPU-like step and
    14 ms beside a 10 ms one, against 23-51 ms reading them in process. A worker reads a step's
    segments in ~25 ms: for shorter steps give it company (2-4) where cores are free. Ignored on
    the RAM path."""
    seed: int = 0
    """Seed of the model initialisation and of every batch and noise draw."""
    video: VideoTrainConfig = field(default_factory=VideoTrainConfig)

    def __post_init__(self):
        _at_least(self, 1, "steps", "batch_size", "rew_end_batch_size", "rew_end_seq_len", "val_batches",
                  "log_every", "val_every", "checkpoint_every")
        _at_least(self, 0, "weight_decay", "warmup_steps", "autoregressive_steps", "seed")
        _positive(self, "lr", "adam_eps", "grad_clip_denoiser", "grad_clip_rew_end")
        _check(self, "val_fraction", 0.0 <= self.val_fraction < 1.0, "must be in [0, 1)")
        _sample_weights(self)
        _data_path(self)
        _at_least(self, 0, "data_workers")


@dataclass(frozen=True)
class DistillConfig:
    """Distilling a world model's denoiser into a student that needs fewer network evaluations per
    frame (wmcli.training.distill); the `distill` section. The student starts from the teacher's
    weights and learns to map the teacher's start noise, in one (or two) evaluations, to the frame
    the teacher's own sampler makes from that noise (docs/distill.md)."""

    steps: int = 2000
    """Gradient steps of the student (with `wmcli run`: the first epoch's; run.distill_steps after)."""
    student_steps: int = 1
    """Network evaluations per frame of the student: 1, or 2 (then at sigma_max and `sigma_mid`)."""
    sigma_mid: float = 0.3
    """With student_steps 2: the noise level of its second evaluation (about where a 3-step Karras
    schedule takes its second: 0.28 for sigma 2e-3..5); recorded as the student's sampler.sigma_min."""
    batch_size: int = 32
    """Context windows per batch (each one teacher sample and one student sample)."""
    lr: float = 1e-4
    """AdamW learning rate after warm-up (the teacher's DIAMOND rate)."""
    adam_eps: float = 1e-8
    """AdamW epsilon."""
    weight_decay: float = 1e-2
    """AdamW weight decay, on Linear/Conv/LSTM weights only."""
    warmup_steps: int = 100
    """Linear learning-rate warm-up."""
    grad_clip: float = 1.0
    """Gradient-norm clip for the student."""
    sample_weights: tuple[float, ...] | None = (0.1, 0.1, 0.1, 0.7)
    """Recency weighting of the context windows, as train_wm.sample_weights."""
    val_fraction: float = 0.1
    """Share of the store's episodes held out for validation (the same hash split as train_wm's; unused
    when the store records its held-out episodes, `wmcli store split`)."""
    val_batches: int = 4
    """Batches per validation."""
    log_every: int = 50
    """Steps between metric lines."""
    val_every: int = 500
    """Steps between validations (and at the end)."""
    checkpoint_every: int = 1000
    """Steps between checkpoints (and at the end)."""
    channels_last: bool = True
    """Use channels_last memory format for the convolutions."""
    data: str = "auto"
    """Where the context windows are read from: "ram", "disk" or "auto", as train_wm.data."""
    ram_budget_gb: float | None = None
    """With data auto: as train_wm.ram_budget_gb."""
    data_workers: int = 1
    """On the disk path: processes reading batches ahead, as train_wm.data_workers (0: in process)."""
    seed: int = 0
    """Seed of every batch and noise draw."""

    def __post_init__(self):
        _at_least(self, 1, "steps", "batch_size", "val_batches", "log_every", "val_every", "checkpoint_every")
        _check(self, "student_steps", self.student_steps in (1, 2), "must be 1 or 2")
        _at_least(self, 0, "weight_decay", "warmup_steps", "seed", "data_workers")
        _positive(self, "lr", "adam_eps", "grad_clip", "sigma_mid")
        _check(self, "val_fraction", 0.0 <= self.val_fraction < 1.0, "must be in [0, 1)")
        _sample_weights(self)
        _data_path(self)


@dataclass(frozen=True)
class TrainAgentConfig:
    """The agent's training loop in imagination (wmcli.training.train_agent); the `train_agent` section."""

    steps: int = 5000
    """Gradient steps, each on one batch of dreamed games (DIAMOND's first epoch: 5,000)."""
    batch_size: int = 32
    """Dreamed games per step (DIAMOND: 32)."""
    horizon: int = 15
    """Dreamed steps per game before truncation (DIAMOND: 15)."""
    lr: float = 1e-4
    """AdamW learning rate after warm-up (DIAMOND: 1e-4)."""
    adam_eps: float = 1e-8
    """AdamW epsilon (DIAMOND: 1e-8)."""
    weight_decay: float = 0.0
    """AdamW weight decay (DIAMOND: 0 for the actor-critic)."""
    warmup_steps: int = 100
    """Linear learning-rate warm-up (DIAMOND: 100)."""
    grad_clip: float = 100.0
    """Gradient-norm clip (DIAMOND: 100)."""
    sample_weights: tuple[float, ...] | None = (0.1, 0.1, 0.1, 0.7)
    """Recency weighting of the real contexts dreams start from, as train_wm.sample_weights
    (DIAMOND: [0.1, 0.1, 0.1, 0.7]); null: uniform over all segments."""
    log_every: int = 50
    """Steps between metric lines."""
    checkpoint_every: int = 1000
    """Steps between checkpoints (and at the end)."""
    data: str = "auto"
    """Where the real contexts dreams start from are read: "ram", "disk" or "auto", as train_wm.data."""
    ram_budget_gb: float | None = None
    """With data auto: the RAM budget of the episodes' frames (GB), as train_wm.ram_budget_gb."""
    seed: int = 0
    """Seed of the initialisation and of every dream."""

    def __post_init__(self):
        _at_least(self, 1, "steps", "batch_size", "horizon", "log_every", "checkpoint_every")
        _at_least(self, 0, "weight_decay", "warmup_steps", "seed")
        _positive(self, "lr", "adam_eps", "grad_clip")
        _sample_weights(self)
        _data_path(self)


@dataclass(frozen=True)
class RunConfig:
    """DIAMOND's schedule (wmcli.run); the `run` section."""

    initial_collect_steps: int = 5000
    """Random-policy steps before the first epoch (DIAMOND: at least 5,000)."""
    initial_collect_min_rewards: int = 10
    """Then more random play, collect_steps at a time, until the steps of the two rarer reward signs
    number this many (DIAMOND: 10); 0: never."""
    initial_collect_max_steps: int = 10_000
    """...but no more than this many random steps in all (DIAMOND: 10,000)."""
    total_real_steps: int | None = None
    """Real steps in all, the initial collection included (DIAMOND: 100,000, the Atari 100k budget).
    When set, the schedule follows from what the initial collection took, as DIAMOND's does:
    (total_real_steps - initial) / collect_steps collecting epochs, epoch 1 collecting too, then
    `final_epochs` that only train; `epochs` and `collect_epochs` are not used. null: they are."""
    final_epochs: int = 50
    """With total_real_steps: training-only epochs after the last collection (DIAMOND: 50)."""
    epochs: int = 1000
    """Training epochs, without total_real_steps; 0: the initial collection only."""
    collect_steps: int = 100
    """Real steps collected with the agent at the start of each epoch after the first (DIAMOND: 100)."""
    collect_epochs: int = 950
    """Epochs that collect; the last ones only train (DIAMOND: the last 50 do not collect)."""
    epsilon: float = 0.01
    """Probability of a random action when collecting with the agent (DIAMOND: 0.01)."""
    actor_temperature: float = 1.0
    """Temperature of the agent's action sampling when it collects in the real game (its logits
    divided by it; toward 0, its most likely action). Evaluation and training in imagination
    sample at 1. DIAMOND: 1, but for Freeway a low one, IRIS's trick (eloialonso/diamond#34;
    recipes/atari100k-freeway.yaml, docs/run.md)."""
    num_envs: int = 1
    """Envs collecting together (DIAMOND: 1)."""
    wm_steps: int = 400
    """World-model steps per epoch after the first (DIAMOND: 400)."""
    agent_steps: int = 400
    """Agent steps per epoch after the first (DIAMOND: 400)."""
    distill: bool = False
    """After each world-model training, distil it into a few-step student (the `distill` section;
    DIR/wm_student.pt) and train the agent in the student: faster dreams (docs/distill.md)."""
    distill_steps: int = 400
    """With distill: student steps per epoch after the first (the first: distill.steps)."""
    eval_every: int = 10
    """Epochs between evaluations in the real game (DIAMOND: 10)."""
    eval_episodes: int = 4
    """Real episodes per evaluation (DIAMOND: 4)."""
    final_eval_episodes: int = 100
    """Real episodes of the evaluation after the last epoch (DIAMOND: 100)."""
    eval_num_envs: int = 4
    """Envs playing evaluation episodes together."""
    eval_video: bool = True
    """Write each evaluation's first episode to DIR/videos/ (mp4, through imageio-ffmpeg); false
    writes none (a machine without ffmpeg, or runs where the videos are not wanted)."""
    seed: int = 0
    """Seed of collection and evaluation (training seeds are in their sections)."""

    def __post_init__(self):
        _at_least(self, 1, "initial_collect_steps", "collect_steps", "num_envs", "eval_every",
                  "eval_episodes", "final_eval_episodes", "eval_num_envs")
        _at_least(self, 0, "epochs", "initial_collect_min_rewards", "initial_collect_max_steps", "collect_epochs",
                  "wm_steps", "agent_steps", "distill_steps", "seed")
        _probability(self, "epsilon")
        _check(self, "actor_temperature", self.actor_temperature > 0, "must be above 0 (toward 0: the most likely action)")
        if self.total_real_steps is not None:
            longest = max(self.initial_collect_steps,
                          self.initial_collect_max_steps if self.initial_collect_min_rewards > 0 else 0)
            _check(self, "total_real_steps", self.total_real_steps >= longest,
                   f"must cover the longest initial collection ({longest:,} steps: initial_collect_steps, and "
                   f"initial_collect_max_steps while initial_collect_min_rewards > 0)")
            _check(self, "total_real_steps", self.total_real_steps % self.collect_steps == 0
                   and self.initial_collect_steps % self.collect_steps == 0,
                   f"and initial_collect_steps must be whole numbers of collect_steps ({self.collect_steps})")
            _at_least(self, 0, "final_epochs")


def video_cadence(cfg: SamplerConfig, window: int) -> tuple[int, int]:
    """(m, s): a video sampler's frames enter its window m at a time every s network evaluations
    (joint: the whole window every num_steps; staggered: evals_per_frame = s / m)."""
    if cfg.video_schedule == "joint":
        return window, cfg.num_steps
    e = cfg.evals_per_frame
    return (1, int(e)) if e >= 1 else (round(1 / e), 1)


def video_window_frames(cfg: SamplerConfig, window: int) -> int:
    """Frames a video sampler keeps in flight: m * ceil(num_steps / s) (video_cadence)."""
    m, s = video_cadence(cfg, window)
    return m * -(-cfg.num_steps // s)


# ---- the whole recipe ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """Every setting of a world model, its agent and their training: one field per YAML section."""

    env: EnvConfig = field(default_factory=EnvConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    reward_end: RewEndConfig = field(default_factory=RewEndConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    train_wm: TrainWMConfig = field(default_factory=TrainWMConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    actor_critic: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    train_agent: TrainAgentConfig = field(default_factory=TrainAgentConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self):
        """Checks across sections: the networks must fit the frame size, the sampler the denoiser."""
        size = self.env.frame_size
        levels = len(self.denoiser.unet.channels) - 1
        if size % 2**levels:
            raise ConfigValueError("env.frame_size", size, f"must be divisible by {2**levels} for a U-Net of "
                                   f"{levels + 1} levels (denoiser.unet.channels)")
        if size // 2 ** (len(self.reward_end.channels) - 1) < 1:
            raise ConfigValueError("reward_end.channels", list(self.reward_end.channels),
                                   f"has too many levels for {size}x{size} frames")
        if size // 2 ** len(self.actor_critic.channels) < 1:
            raise ConfigValueError("actor_critic.channels", list(self.actor_critic.channels),
                                   f"has too many levels for {size}x{size} frames (each halves them)")
        if self.denoiser.kind == "video":
            if self.run.distill:
                raise ConfigValueError("run.distill", True, "distils DIAMOND's frame-by-frame denoiser; a video world model "
                                       "(denoiser.kind: video) gets faster through sampler.evals_per_frame instead")
            k = self.denoiser.video.window
            for i, stage in enumerate(self.train_wm.video.stages):
                if stage.window > k:
                    raise ConfigValueError(f"train_wm.video.stages[{i}].window", stage.window,
                                           f"exceeds the model's window (denoiser.video.window = {k})")
            if self.sampler.video_schedule == "staggered":
                need = video_window_frames(self.sampler, k)
                if need > k:
                    raise ConfigValueError("sampler.evals_per_frame", self.sampler.evals_per_frame,
                                           f"keeps {need} frames in flight with num_steps {self.sampler.num_steps}, more than "
                                           f"denoiser.video.window ({k}); use at least {self.sampler.num_steps / k:g}")
        if SAMPLERS[self.sampler.name] != self.denoiser.formulation:
            fits = [s for s, f in SAMPLERS.items() if f == self.denoiser.formulation]
            raise ConfigValueError("sampler.name", self.sampler.name,
                                   f"works only with an {SAMPLERS[self.sampler.name]} denoiser, but "
                                   f"denoiser.formulation is {self.denoiser.formulation} (use {' or '.join(fits)})")

    def to_dict(self) -> dict:
        return _to_plain(asdict(self))


def _to_plain(x):
    if isinstance(x, dict):
        return {k: _to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_plain(v) for v in x]
    return x


SECTIONS = tuple(f.name for f in fields(Recipe))
