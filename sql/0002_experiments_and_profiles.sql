-- Seed 002: the uuid-keyed world (user_profiles, A/B testing, gamification).
-- Column names, types, nullability, defaults and checks are the seed's, defaults in its own
-- text (timezone('utc'::text, now()) included). Tables are created in foreign-key order.

CREATE TYPE experiment_status_enum AS ENUM ('draft', 'active', 'paused', 'completed', 'archived');

CREATE TYPE device_type_enum AS ENUM (
    'desktop', 'mobile', 'tablet', 'tv', 'wearable', 'bot', 'other'
);

CREATE TYPE connection_type_enum AS ENUM (
    'wifi', 'cellular', 'ethernet', 'slow-2g', '2g', '3g', '4g', '5g', 'offline', 'other'
);

CREATE TABLE experiments (
    id uuid NOT NULL DEFAULT uuid_generate_v4() PRIMARY KEY,
    name text NOT NULL UNIQUE,
    description text NULL,
    created_at timestamptz NOT NULL DEFAULT timezone('utc'::text, now()),
    is_active boolean NULL DEFAULT true,
    updated_at timestamptz NULL DEFAULT now(),
    target_sample_size integer NULL,
    confidence_level numeric(3, 2) NULL DEFAULT 0.95
        CHECK ((confidence_level >= 0.80) AND (confidence_level <= 0.99)),
    minimum_detectable_effect numeric(5, 4) NULL DEFAULT 0.05,
    started_at timestamptz NULL,
    ended_at timestamptz NULL,
    status experiment_status_enum NULL DEFAULT 'draft'::experiment_status_enum
);

CREATE TABLE user_profiles (
    id uuid NOT NULL DEFAULT uuid_generate_v4() PRIMARY KEY,
    email text NOT NULL UNIQUE,
    insight_gems integer NOT NULL DEFAULT 100,
    referral_code text NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    first_name text NULL,
    is_email_verified boolean NOT NULL DEFAULT false,
    email_verified_at timestamptz NULL,
    kit_subscriber_id text NULL,
    last_verification_email_sent_at timestamptz NULL,
    action_token uuid NULL DEFAULT uuid_generate_v4(),
    kit_state text NULL DEFAULT 'unconfirmed'::text,
    deleted_at timestamptz NULL
);

COMMENT ON COLUMN user_profiles.is_email_verified IS
    'Tracks if the user''s email has been verified.';
COMMENT ON COLUMN user_profiles.email_verified_at IS
    'Timestamp of when the email was verified.';
COMMENT ON COLUMN user_profiles.kit_subscriber_id IS 'ConvertKit subscriber ID.';
COMMENT ON COLUMN user_profiles.last_verification_email_sent_at IS
    'Timestamp of the last verification email sent.';
COMMENT ON COLUMN user_profiles.action_token IS
    'A secure, single-use token for authorizing actions without a full login session.';
COMMENT ON COLUMN user_profiles.kit_state IS
    'Caches the user''s state from ConvertKit (e.g., active, cancelled, bounced) for fast filtering on the admin dashboard.';
COMMENT ON COLUMN user_profiles.deleted_at IS
    'Timestamp for soft deletion. If NULL, the user is active.';

-- People are matched across users and user_profiles by lower-cased email (Kit events too).
CREATE INDEX user_profiles_lower_email_idx ON user_profiles (lower(email));
CREATE INDEX user_profiles_kit_subscriber_id_idx ON user_profiles (kit_subscriber_id);

CREATE TABLE engagement_rewards (
    id uuid NOT NULL DEFAULT uuid_generate_v4() PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES user_profiles (id) ON DELETE CASCADE,
    reward_type text NOT NULL,
    reward_amount integer NOT NULL,
    created_at timestamptz NULL DEFAULT now()
);

CREATE TABLE gem_transactions (
    id uuid NOT NULL DEFAULT uuid_generate_v4() PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES user_profiles (id) ON DELETE CASCADE,
    source_engagement_id uuid NULL,
    transaction_type text NOT NULL
        CHECK ((transaction_type = ANY (ARRAY['CREDIT'::text, 'DEBIT'::text]))),
    amount integer NOT NULL CHECK ((amount > 0)),
    description text NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE quiz_attempts (
    id uuid NOT NULL DEFAULT uuid_generate_v4() PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES user_profiles (id) ON DELETE CASCADE,
    quiz_name text NOT NULL,
    score integer NULL,
    result_type text NULL,
    earned_gems integer NULL DEFAULT 0,
    created_at timestamptz NULL DEFAULT now()
);

CREATE TABLE quiz_results (
    id uuid NOT NULL DEFAULT uuid_generate_v4() PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES user_profiles (id) ON DELETE CASCADE,
    attempt_timestamp timestamp NULL DEFAULT now(),
    quiz_type text NOT NULL,
    quiz_version text NULL DEFAULT '1.0'::text
        CHECK ((quiz_version ~ '^[0-9]+\.[0-9]+(\.[0-9]+)?$'::text)),
    scores jsonb NULL,
    result_type text NOT NULL,
    result_details jsonb NULL,
    questions_and_answers jsonb NOT NULL,
    quiz_metadata jsonb NULL,
    first_name text NULL,
    user_agent text NULL,
    ip_address inet NULL,
    referrer text NULL,
    utm_source text NULL,
    utm_medium text NULL,
    utm_campaign text NULL,
    country_code text NULL,
    device_type text NULL,
    is_email_verified boolean NULL DEFAULT false,
    verification_timestamp timestamp NULL,
    session_identifier uuid NULL,
    experiment_data jsonb NULL,
    created_at timestamp NULL DEFAULT now()
);

CREATE TABLE referrals (
    id uuid NOT NULL DEFAULT uuid_generate_v4() PRIMARY KEY,
    referrer_id uuid NOT NULL REFERENCES user_profiles (id) ON DELETE CASCADE,
    new_user_id uuid NOT NULL UNIQUE REFERENCES user_profiles (id) ON DELETE CASCADE,
    new_user_email text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_engagement_tracking (
    id uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES user_profiles (id) ON DELETE CASCADE,
    engagement_type text NOT NULL,
    experiment_context text NULL,
    variant_context text NULL,
    page_url text NULL,
    metadata jsonb NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NULL DEFAULT timezone('utc'::text, now())
);

CREATE TABLE user_engagements (
    id uuid NOT NULL DEFAULT uuid_generate_v4() PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES user_profiles (id) ON DELETE CASCADE,
    event_type text NOT NULL,
    event_metadata jsonb NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE variants (
    id uuid NOT NULL DEFAULT uuid_generate_v4() PRIMARY KEY,
    experiment_id uuid NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    name text NOT NULL,
    config_json jsonb NULL,
    created_at timestamptz NOT NULL DEFAULT timezone('utc'::text, now()),
    description text NULL,
    updated_at timestamptz NULL DEFAULT now(),
    UNIQUE (experiment_id, name)
);

CREATE TABLE conversions (
    id uuid NOT NULL DEFAULT uuid_generate_v4() PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES user_profiles (id) ON DELETE CASCADE,
    variant_id uuid NOT NULL REFERENCES variants (id) ON DELETE CASCADE,
    experiment_id uuid NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    session_identifier text NULL,
    conversion_type text NOT NULL,
    details jsonb NULL,
    created_at timestamptz NOT NULL DEFAULT timezone('utc'::text, now()),
    country_code varchar(2) NULL,
    device_type device_type_enum NULL,
    referrer_source varchar(200) NULL,
    utm_source varchar(100) NULL,
    utm_medium varchar(100) NULL,
    utm_campaign varchar(100) NULL,
    conversion_value numeric(10, 2) NULL CHECK ((conversion_value >= (0)::numeric)),
    time_to_convert integer NULL,
    metadata jsonb NULL DEFAULT '{}'::jsonb,
    is_first_conversion_for_experiment boolean NULL DEFAULT true,
    conversion_attribution_source text NULL DEFAULT 'direct'::text,
    conversion_window_days integer NULL DEFAULT 30,
    original_exposure_date timestamptz NULL,
    conversion_eligibility_verified boolean NULL DEFAULT false,
    conversion_context jsonb NULL DEFAULT '{}'::jsonb
);

CREATE TABLE impressions (
    id uuid NOT NULL DEFAULT uuid_generate_v4() PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES user_profiles (id) ON DELETE CASCADE,
    variant_id uuid NOT NULL REFERENCES variants (id) ON DELETE CASCADE,
    session_identifier text NULL,
    impression_at timestamptz NOT NULL DEFAULT now(),
    experiment_id uuid NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    page_url text NULL,
    user_agent text NULL,
    country_code varchar(2) NULL,
    region varchar(100) NULL,
    city varchar(100) NULL,
    device_type device_type_enum NULL,
    screen_resolution varchar(20) NULL,
    viewport_size varchar(20) NULL,
    connection_type connection_type_enum NULL,
    language_code varchar(10) NULL,
    time_zone varchar(50) NULL,
    utm_source varchar(100) NULL,
    utm_medium varchar(100) NULL,
    utm_campaign varchar(100) NULL,
    time_on_page integer NULL,
    scroll_depth_percent integer NULL
        CHECK ((scroll_depth_percent >= 0) AND (scroll_depth_percent <= 100)),
    page_load_time integer NULL,
    bounce boolean NULL DEFAULT false,
    is_first_exposure boolean NULL DEFAULT false,
    user_was_eligible boolean NULL DEFAULT true,
    metadata jsonb NULL DEFAULT '{}'::jsonb,
    user_eligibility_status jsonb NULL DEFAULT '{}'::jsonb,
    user_context jsonb NULL DEFAULT '{}'::jsonb
);

-- The seed documents these references only as comments ("FK to user_profiles.id.", the
-- experiment/variant the user was exposed to, the impression). The token belongs to its
-- profile and goes with it; the experiment context is optional and survives as NULL when
-- its experiment, variant or impression is deleted.
CREATE TABLE email_verification_tokens (
    id uuid NOT NULL DEFAULT uuid_generate_v4() PRIMARY KEY,
    user_profile_id uuid NOT NULL REFERENCES user_profiles (id) ON DELETE CASCADE,
    token text NOT NULL UNIQUE,
    email text NOT NULL,
    expires_at timestamptz NOT NULL,
    is_used boolean NOT NULL DEFAULT false,
    used_at timestamptz NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    experiment_id uuid NULL REFERENCES experiments (id) ON DELETE SET NULL,
    variant_id uuid NULL REFERENCES variants (id) ON DELETE SET NULL,
    impression_id uuid NULL REFERENCES impressions (id) ON DELETE SET NULL
);

COMMENT ON COLUMN email_verification_tokens.token IS 'Secure, unique verification token.';
COMMENT ON COLUMN email_verification_tokens.experiment_id IS
    'The A/B test experiment the user was part of when the token was generated.';
COMMENT ON COLUMN email_verification_tokens.variant_id IS
    'The specific A/B test variant the user was exposed to when the token was generated.';

CREATE TABLE user_experiment_participation (
    id uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES user_profiles (id) ON DELETE CASCADE,
    experiment_id uuid NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    variant_id uuid NOT NULL REFERENCES variants (id) ON DELETE CASCADE,
    first_exposure_date timestamptz NOT NULL DEFAULT now(),
    was_eligible_at_exposure boolean NOT NULL DEFAULT true,
    eligibility_criteria jsonb NULL DEFAULT '{}'::jsonb,
    total_impressions integer NULL DEFAULT 1,
    has_converted boolean NULL DEFAULT false,
    first_conversion_date timestamptz NULL
        CHECK ((first_conversion_date IS NULL) OR (first_conversion_date >= first_exposure_date)),
    conversion_within_window boolean NULL DEFAULT false,
    created_at timestamptz NULL DEFAULT timezone('utc'::text, now()),
    updated_at timestamptz NULL DEFAULT now(),
    UNIQUE (user_id, experiment_id)
);

CREATE TABLE conversion_attribution (
    id uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES user_profiles (id) ON DELETE CASCADE,
    conversion_id uuid NOT NULL UNIQUE REFERENCES conversions (id) ON DELETE CASCADE,
    experiment_id uuid NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    variant_id uuid NOT NULL REFERENCES variants (id) ON DELETE CASCADE,
    attribution_method text NOT NULL DEFAULT 'first_exposure'::text,
    attribution_confidence numeric(3, 2) NULL DEFAULT 1.00
        CHECK (((attribution_confidence >= (0)::numeric) AND (attribution_confidence <= (1)::numeric))),
    time_to_conversion_hours integer NULL CHECK ((time_to_conversion_hours >= 0)),
    conversion_value_attributed numeric(10, 2) NULL,
    created_at timestamptz NULL DEFAULT timezone('utc'::text, now())
);

-- Indexes on the referencing columns: every ON DELETE CASCADE above would otherwise scan the
-- child table, and the experiment report groups by experiment and variant.
CREATE INDEX engagement_rewards_user_id_idx ON engagement_rewards (user_id);
CREATE INDEX gem_transactions_user_id_idx ON gem_transactions (user_id);
CREATE INDEX quiz_attempts_user_id_idx ON quiz_attempts (user_id);
CREATE INDEX quiz_results_user_id_idx ON quiz_results (user_id);
CREATE INDEX referrals_referrer_id_idx ON referrals (referrer_id);
CREATE INDEX user_engagement_tracking_user_id_idx ON user_engagement_tracking (user_id);
CREATE INDEX user_engagements_user_id_idx ON user_engagements (user_id);
CREATE INDEX conversions_user_id_idx ON conversions (user_id);
CREATE INDEX conversions_experiment_variant_idx ON conversions (experiment_id, variant_id);
CREATE INDEX conversions_variant_id_idx ON conversions (variant_id);
CREATE INDEX impressions_user_id_idx ON impressions (user_id);
CREATE INDEX impressions_experiment_variant_idx ON impressions (experiment_id, variant_id);
CREATE INDEX impressions_variant_id_idx ON impressions (variant_id);
CREATE INDEX email_verification_tokens_user_profile_id_idx
    ON email_verification_tokens (user_profile_id);
CREATE INDEX email_verification_tokens_experiment_id_idx
    ON email_verification_tokens (experiment_id);
CREATE INDEX email_verification_tokens_variant_id_idx ON email_verification_tokens (variant_id);
CREATE INDEX email_verification_tokens_impression_id_idx
    ON email_verification_tokens (impression_id);
CREATE INDEX user_experiment_participation_experiment_variant_idx
    ON user_experiment_participation (experiment_id, variant_id);
CREATE INDEX user_experiment_participation_variant_id_idx
    ON user_experiment_participation (variant_id);
CREATE INDEX conversion_attribution_user_id_idx ON conversion_attribution (user_id);
CREATE INDEX conversion_attribution_experiment_variant_idx
    ON conversion_attribution (experiment_id, variant_id);
CREATE INDEX conversion_attribution_variant_id_idx ON conversion_attribution (variant_id);
