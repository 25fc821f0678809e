"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 04:20:14.134052
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # pgvector ships with the server (the embedded one and pgvector/pgvector images); the extension is per database.
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False, comment='first characters, for lookup'),
    sa.Column('key_hash', sa.String(length=64), nullable=False, comment='SHA-256 hex of the whole key'),
    sa.Column('scopes', postgresql.ARRAY(sa.String(length=16)), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("scopes <@ ARRAY['read', 'ingest', 'admin']::varchar[]", name=op.f('ck_api_keys_scopes')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('prefix', name=op.f('uq_api_keys_prefix'))
    )
    op.create_table('interactions',
    sa.Column('player_key', sa.BigInteger(), nullable=False),
    sa.Column('slot_key', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('sessions', sa.Integer(), nullable=False),
    sa.Column('bonus_sessions', sa.Integer(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.Column('spins', sa.Integer(), nullable=False),
    sa.Column('total_bet', sa.Numeric(precision=16, scale=2), nullable=False),
    sa.Column('total_win', sa.Numeric(precision=16, scale=2), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('normalized_score', sa.Float(), nullable=False),
    sa.Column('consolidated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('normalized_score >= 0 AND normalized_score <= 1', name=op.f('ck_interactions_normalized_unit')),
    sa.CheckConstraint('score >= 0', name=op.f('ck_interactions_score_non_negative')),
    sa.PrimaryKeyConstraint('player_key', 'slot_key', 'day', name=op.f('pk_interactions')),
    postgresql_partition_by='RANGE (day)'
    )
    op.create_index(op.f('ix_interactions_day'), 'interactions', ['day'], unique=False)
    op.create_table('job_watermarks',
    sa.Column('job', sa.String(length=64), nullable=False),
    sa.Column('watermark', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('job', name=op.f('pk_job_watermarks'))
    )
    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='training', nullable=False),
    sa.Column('model', sa.String(length=16), nullable=False, comment='neumf, gmf or mlp'),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment='the NCFConfig that produced it'),
    sa.Column('data_start', sa.Date(), nullable=True, comment='first interaction day used'),
    sa.Column('data_end', sa.Date(), nullable=True, comment='last interaction day used (holdout included)'),
    sa.Column('holdout_start', sa.Date(), nullable=True, comment='first day of the time-based holdout'),
    sa.Column('metrics', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('similarity_vector', sa.String(length=32), nullable=True, comment='which slot vector FAISS indexes'),
    sa.Column('n_players', sa.Integer(), nullable=True),
    sa.Column('n_slots', sa.Integer(), nullable=True),
    sa.Column('weights', postgresql.BYTEA(), nullable=True, comment='every non-embedding weight needed to score (npz)'),
    sa.Column('curve_path', sa.Text(), nullable=True, comment='training-curve plot'),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('ready_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('training', 'ready', 'active', 'retired', 'failed')", name=op.f('ck_model_versions_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions'))
    )
    op.create_index('uq_model_versions_one_active', 'model_versions', ['status'], unique=True, postgresql_where=sa.text("status = 'active'"))
    op.create_table('players',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('player_id', sa.String(length=128), nullable=False),
    sa.Column('market', sa.String(length=16), nullable=True),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('self_excluded_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cooling_off_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('marketing_consent', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('risk_flag', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("player_id <> ''", name=op.f('ck_players_player_id_not_empty')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_players')),
    sa.UniqueConstraint('player_id', name=op.f('uq_players_player_id'))
    )
    op.create_table('slots',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('slot_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('provider', sa.Text(), nullable=False),
    sa.Column('theme', sa.Text(), nullable=False),
    sa.Column('volatility', sa.String(length=8), nullable=False),
    sa.Column('rtp', sa.Numeric(precision=5, scale=2), nullable=False, comment='return to player, percent'),
    sa.Column('min_bet', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('max_bet', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('release_date', sa.Date(), nullable=True),
    sa.Column('active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('markets', postgresql.ARRAY(sa.String(length=16)), nullable=True, comment='markets where it may be offered; NULL = every market'),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("slot_id <> ''", name=op.f('ck_slots_slot_id_not_empty')),
    sa.CheckConstraint("volatility IN ('low', 'medium', 'high')", name=op.f('ck_slots_volatility')),
    sa.CheckConstraint('min_bet >= 0 AND max_bet >= min_bet', name=op.f('ck_slots_bet_range')),
    sa.CheckConstraint('rtp > 0 AND rtp <= 100', name=op.f('ck_slots_rtp_percent')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_slots')),
    sa.UniqueConstraint('slot_id', name=op.f('uq_slots_slot_id'))
    )
    op.create_table('offline_recommendations',
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('player_key', sa.BigInteger(), nullable=False),
    sa.Column('slot_keys', postgresql.ARRAY(sa.Integer()), nullable=False, comment='best first'),
    sa.Column('scores', postgresql.ARRAY(sa.Float()), nullable=False),
    sa.ForeignKeyConstraint(['player_key'], ['players.id'], name=op.f('fk_offline_recommendations_player_key_players')),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], name=op.f('fk_offline_recommendations_version_id_model_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('version_id', 'player_key', name=op.f('pk_offline_recommendations'))
    )
    op.create_table('player_embeddings',
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('player_key', sa.BigInteger(), nullable=False),
    sa.Column('idx', sa.Integer(), nullable=False, comment="row of this player in the version's tables"),
    sa.Column('gmf', Vector(), nullable=True, comment='GMF tower embedding'),
    sa.Column('mlp', Vector(), nullable=True, comment='MLP tower embedding'),
    sa.ForeignKeyConstraint(['player_key'], ['players.id'], name=op.f('fk_player_embeddings_player_key_players')),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], name=op.f('fk_player_embeddings_version_id_model_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('version_id', 'player_key', name=op.f('pk_player_embeddings'))
    )
    op.create_table('recommendations',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('player_key', sa.BigInteger(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=True),
    sa.Column('trigger', sa.String(length=32), nullable=False),
    sa.Column('context_slot_key', sa.Integer(), nullable=True),
    sa.Column('session_key', sa.BigInteger(), nullable=True, comment='play session that fired a session_threshold trigger'),
    sa.Column('market', sa.String(length=16), nullable=True),
    sa.Column('suppressed_reason', sa.String(length=32), nullable=True, comment='NULL when the gate allowed it'),
    sa.Column('action', sa.String(length=32), nullable=True, comment='e.g. reality_check instead of games'),
    sa.Column('filters', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False, comment='what produced the list: candidate source, exclusions, exploration share, index'),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("suppressed_reason IS NULL OR suppressed_reason IN ('self_excluded', 'cooling_off', 'no_consent', 'risk_flag', 'session_limit', 'night_hours')", name=op.f('ck_recommendations_suppressed_reason')),
    sa.CheckConstraint("trigger IN ('api', 'session_threshold')", name=op.f('ck_recommendations_trigger')),
    sa.ForeignKeyConstraint(['context_slot_key'], ['slots.id'], name=op.f('fk_recommendations_context_slot_key_slots')),
    sa.ForeignKeyConstraint(['player_key'], ['players.id'], name=op.f('fk_recommendations_player_key_players')),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], name=op.f('fk_recommendations_version_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recommendations'))
    )
    op.create_index(op.f('ix_recommendations_created_at'), 'recommendations', ['created_at'], unique=False)
    op.create_index(op.f('ix_recommendations_player_key_created_at'), 'recommendations', ['player_key', 'created_at'], unique=False)
    op.create_table('slot_embeddings',
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('slot_key', sa.Integer(), nullable=False),
    sa.Column('idx', sa.Integer(), nullable=False, comment="row of this slot in the version's tables"),
    sa.Column('gmf', Vector(), nullable=True, comment='GMF tower embedding'),
    sa.Column('mlp', Vector(), nullable=True, comment='MLP tower embedding'),
    sa.Column('similarity', Vector(), nullable=False, comment='L2-normalised retrieval vector FAISS indexes'),
    sa.Column('provisional', sa.Boolean(), server_default=sa.text('false'), nullable=False, comment='built from attributes for a slot added after training'),
    sa.ForeignKeyConstraint(['slot_key'], ['slots.id'], name=op.f('fk_slot_embeddings_slot_key_slots')),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], name=op.f('fk_slot_embeddings_version_id_model_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('version_id', 'slot_key', name=op.f('pk_slot_embeddings'))
    )
    op.create_table('synth_player_clusters',
    sa.Column('player_key', sa.BigInteger(), nullable=False),
    sa.Column('cluster', sa.SmallInteger(), nullable=False),
    sa.ForeignKeyConstraint(['player_key'], ['players.id'], name=op.f('fk_synth_player_clusters_player_key_players'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('player_key', name=op.f('pk_synth_player_clusters'))
    )
    op.create_table('synth_slot_clusters',
    sa.Column('slot_key', sa.Integer(), nullable=False),
    sa.Column('cluster', sa.SmallInteger(), nullable=False),
    sa.ForeignKeyConstraint(['slot_key'], ['slots.id'], name=op.f('fk_synth_slot_clusters_slot_key_slots'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('slot_key', name=op.f('pk_synth_slot_clusters'))
    )
    op.create_table('play_sessions',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('player_key', sa.BigInteger(), nullable=False),
    sa.Column('slot_key', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_event_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('seconds', sa.Float(), server_default='0', nullable=False, comment='continuous play time'),
    sa.Column('spins', sa.Integer(), server_default='0', nullable=False),
    sa.Column('total_bet', sa.Numeric(precision=14, scale=2), server_default='0', nullable=False),
    sa.Column('total_win', sa.Numeric(precision=14, scale=2), server_default='0', nullable=False),
    sa.Column('bonus', sa.Boolean(), server_default=sa.text('false'), nullable=False, comment='bonus/promotion play'),
    sa.Column('recommendation_id', sa.UUID(), nullable=True),
    sa.Column('trigger_fired_at', sa.DateTime(timezone=True), nullable=True, comment='when the long-session trigger fired'),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('ended_at IS NULL OR ended_at >= started_at', name=op.f('ck_play_sessions_non_negative_duration')),
    sa.CheckConstraint('last_event_at >= started_at', name=op.f('ck_play_sessions_event_order')),
    sa.CheckConstraint('seconds >= 0 AND spins >= 0 AND total_bet >= 0 AND total_win >= 0', name=op.f('ck_play_sessions_non_negative')),
    sa.ForeignKeyConstraint(['player_key'], ['players.id'], name=op.f('fk_play_sessions_player_key_players')),
    sa.ForeignKeyConstraint(['recommendation_id'], ['recommendations.id'], name=op.f('fk_play_sessions_recommendation_id_recommendations')),
    sa.ForeignKeyConstraint(['slot_key'], ['slots.id'], name=op.f('fk_play_sessions_slot_key_slots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_play_sessions')),
    sa.UniqueConstraint('session_id', name=op.f('uq_play_sessions_session_id'))
    )
    op.create_index(op.f('ix_play_sessions_player_key_slot_key'), 'play_sessions', ['player_key', 'slot_key'], unique=False)
    op.create_index(op.f('ix_play_sessions_slot_key'), 'play_sessions', ['slot_key'], unique=False)
    op.create_index(op.f('ix_play_sessions_started_at'), 'play_sessions', ['started_at'], unique=False)
    op.create_index(op.f('ix_play_sessions_updated_at'), 'play_sessions', ['updated_at'], unique=False)
    op.create_table('recommendation_items',
    sa.Column('recommendation_id', sa.UUID(), nullable=False),
    sa.Column('rank', sa.SmallInteger(), nullable=False, comment='1-based'),
    sa.Column('slot_key', sa.Integer(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('explored', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.CheckConstraint("reason IN ('similar', 'personal', 'explore', 'popular', 'cold_start')", name=op.f('ck_recommendation_items_reason')),
    sa.ForeignKeyConstraint(['recommendation_id'], ['recommendations.id'], name=op.f('fk_recommendation_items_recommendation_id_recommendations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['slot_key'], ['slots.id'], name=op.f('fk_recommendation_items_slot_key_slots')),
    sa.PrimaryKeyConstraint('recommendation_id', 'rank', name=op.f('pk_recommendation_items')),
    sa.UniqueConstraint('recommendation_id', 'slot_key', name=op.f('uq_recommendation_items_recommendation_id_slot_key'))
    )
    op.create_index(op.f('ix_recommendation_items_slot_key'), 'recommendation_items', ['slot_key'], unique=False)
    op.create_table('feedback',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('recommendation_id', sa.UUID(), nullable=False),
    sa.Column('slot_key', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("action IN ('impression', 'click', 'play', 'dismiss')", name=op.f('ck_feedback_action')),
    sa.ForeignKeyConstraint(['recommendation_id', 'slot_key'], ['recommendation_items.recommendation_id', 'recommendation_items.slot_key'], name='fk_feedback_item', ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feedback')),
    sa.UniqueConstraint('recommendation_id', 'slot_key', 'action', name=op.f('uq_feedback_recommendation_id_slot_key_action'))
    )
    op.create_index(op.f('ix_feedback_slot_key_action'), 'feedback', ['slot_key', 'action'], unique=False)
    op.create_table('play_events',
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('session_key', sa.BigInteger(), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False, comment='event time'),
    sa.Column('bet', sa.Numeric(precision=12, scale=2), nullable=True),
    sa.Column('win', sa.Numeric(precision=12, scale=2), nullable=True),
    sa.Column('bonus', sa.Boolean(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("type IN ('start', 'heartbeat', 'spin', 'end')", name=op.f('ck_play_events_type')),
    sa.CheckConstraint('bet IS NULL OR bet >= 0', name=op.f('ck_play_events_bet_non_negative')),
    sa.CheckConstraint('win IS NULL OR win >= 0', name=op.f('ck_play_events_win_non_negative')),
    sa.ForeignKeyConstraint(['session_key'], ['play_sessions.id'], name=op.f('fk_play_events_session_key_play_sessions')),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_play_events'))
    )
    op.create_index(op.f('ix_play_events_session_key_ts'), 'play_events', ['session_key', 'ts'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_play_events_session_key_ts'), table_name='play_events')
    op.drop_table('play_events')
    op.drop_index(op.f('ix_feedback_slot_key_action'), table_name='feedback')
    op.drop_table('feedback')
    op.drop_index(op.f('ix_recommendation_items_slot_key'), table_name='recommendation_items')
    op.drop_table('recommendation_items')
    op.drop_index(op.f('ix_play_sessions_updated_at'), table_name='play_sessions')
    op.drop_index(op.f('ix_play_sessions_started_at'), table_name='play_sessions')
    op.drop_index(op.f('ix_play_sessions_slot_key'), table_name='play_sessions')
    op.drop_index(op.f('ix_play_sessions_player_key_slot_key'), table_name='play_sessions')
    op.drop_table('play_sessions')
    op.drop_table('synth_slot_clusters')
    op.drop_table('synth_player_clusters')
    op.drop_table('slot_embeddings')
    op.drop_index(op.f('ix_recommendations_player_key_created_at'), table_name='recommendations')
    op.drop_index(op.f('ix_recommendations_created_at'), table_name='recommendations')
    op.drop_table('recommendations')
    op.drop_table('player_embeddings')
    op.drop_table('offline_recommendations')
    op.drop_table('slots')
    op.drop_table('players')
    op.drop_index('uq_model_versions_one_active', table_name='model_versions', postgresql_where=sa.text("status = 'active'"))
    op.drop_table('model_versions')
    op.drop_table('job_watermarks')
    op.drop_index(op.f('ix_interactions_day'), table_name='interactions')
    op.drop_table('interactions')
    op.drop_table('api_keys')
